package ctnl

// The Listener's socket: opened in its namespace, bound, its options set
// and the DESTROY group joined.

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// groupCTDestroy is NFNLGRP_CONNTRACK_DESTROY.
const groupCTDestroy = 3

// openSocket opens the Listener's raw netlink socket in cfg's namespace,
// with the options cfg asks for, a member of the conntrack DESTROY group.
func openSocket(cfg ListenConfig) (int, error) {
	var fd int
	err := netns.Do(cfg.NetNS, func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("opening conntrack netlink socket: %w", withCapability(err))
	}
	if err := setSocketOptions(fd, cfg); err != nil {
		unix.Close(fd)
		return 0, err
	}
	return fd, nil
}

// setSocketOptions binds fd, sets the options cfg asks for and joins the
// conntrack DESTROY group.
func setSocketOptions(fd int, cfg ListenConfig) error {
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding conntrack netlink socket: %w", err)
	}
	if cfg.ReadBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.ReadBuffer); err != nil {
			return fmt.Errorf("setting the conntrack receive buffer to %d bytes: %w", cfg.ReadBuffer, err)
		}
	}
	if cfg.NoENOBUFS || cfg.Reliable {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1); err != nil {
			return fmt.Errorf("setting NETLINK_NO_ENOBUFS: %w", err)
		}
	}
	if cfg.Reliable {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_BROADCAST_ERROR, 1); err != nil {
			return fmt.Errorf("setting NETLINK_BROADCAST_ERROR: %w", err)
		}
	}
	// A receive timeout lets Run notice that its context is done.
	tv := unix.NsecToTimeval(int64(250e6))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting the receive timeout: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, groupCTDestroy); err != nil {
		return fmt.Errorf("joining the conntrack DESTROY group: %w", err)
	}
	return nil
}
