package ctnl

// The seam between the Listener and Dumper and the kernel: the socket
// interface, its real implementation over a raw netlink socket, and the
// opening of the Listener's and the Dumper's sockets.

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// groupCTDestroy is NFNLGRP_CONNTRACK_DESTROY.
const groupCTDestroy = 3

// socket is where a Listener and a Dumper read from and write to the
// kernel: one netlink socket, opened and configured. netlinkSocket is the
// real one; tests put a fake kernel in its place, so that the receive and
// dump loops (overruns, buffer growth, fallbacks, abandoned dumps) run
// without root. Every method is called once per system call of the real
// socket, never once per message: a receive returns a batch of datagrams
// (recvmmsg, a ring's reap) or one datagram of many messages (recvfrom).
type socket interface {
	// recvmmsg receives up to len(msgs) datagrams into the buffers their
	// headers point to, blocking for the first one only up to the
	// socket's receive timeout (then unix.EAGAIN). It sets each received
	// header's length and flags (unix.MSG_TRUNC for a datagram larger
	// than its buffer) and returns how many it filled.
	recvmmsg(msgs []mmsghdr) (int, error)
	// recvfrom receives one datagram into b, blocking up to the socket's
	// receive timeout (then unix.EAGAIN).
	recvfrom(b []byte) (int, error)
	// sendto sends one request to the kernel.
	sendto(b []byte) error
	// meminfo returns the socket's SO_MEMINFO counters.
	meminfo() ([skMeminfoVars]uint32, error)
	// setReadBuffer sets the receive buffer with SO_RCVBUFFORCE.
	setReadBuffer(bytes int) error
	// readBuffer returns the receive buffer the kernel granted (SO_RCVBUF).
	readBuffer() (int, error)
	// setFilter replaces the socket's event filter with f's program, or
	// detaches it when f is nil or keeps every event.
	setFilter(f *EventFilter) error
	// newRing sets up an io_uring multishot receive of the socket into
	// slots provided buffers (a power of two). It fails with
	// errRingUnavailable wrapped where the kernel does not allow one. The
	// ring must be used, and closed, by the OS thread that made it.
	newRing(slots int) (ring, error)
	// close closes the socket.
	close() error
}

// netlinkSocket is a raw netlink socket: the socket the kernel writes to.
type netlinkSocket int

var _ socket = netlinkSocket(0)

func (s netlinkSocket) recvmmsg(msgs []mmsghdr) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_WAITFORONE, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func (s netlinkSocket) recvfrom(b []byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func (s netlinkSocket) sendto(b []byte) error {
	return unix.Sendto(int(s), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (s netlinkSocket) meminfo() ([skMeminfoVars]uint32, error) {
	var mem [skMeminfoVars]uint32
	size := uint32(unsafe.Sizeof(mem))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return mem, errno
	}
	return mem, nil
}

func (s netlinkSocket) setReadBuffer(bytes int) error {
	return unix.SetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
}

func (s netlinkSocket) readBuffer() (int, error) {
	return unix.GetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_RCVBUF)
}

func (s netlinkSocket) setFilter(f *EventFilter) error {
	if f == nil || len(f.Program) == 0 {
		// ENOENT: no filter was attached, which is what was asked.
		if err := unix.SetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("detaching the event filter: %w", err)
		}
		return nil
	}
	// SO_ATTACH_FILTER replaces the program attached, in one step: no
	// event is judged by neither.
	return attachFilter(int(s), f)
}

func (s netlinkSocket) newRing(slots int) (ring, error) {
	r, err := newRecvRing(int(s), slots)
	if err != nil {
		// Not a nil *recvRing in a non-nil ring.
		return nil, err
	}
	return r, nil
}

func (s netlinkSocket) close() error {
	return unix.Close(int(s))
}

// openNetlink opens a raw netfilter netlink socket in the namespace whose
// descriptor is nsFD and binds it.
func openNetlink(nsFD int) (int, error) {
	var fd int
	err := netns.Do(nsFD, func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("opening conntrack netlink socket: %w", withCapability(err))
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("binding conntrack netlink socket: %w", err)
	}
	return fd, nil
}

// openSocket opens the Listener's raw netlink socket in cfg's namespace,
// with the options cfg asks for, a member of the conntrack DESTROY group.
func openSocket(cfg ListenConfig) (socket, error) {
	fd, err := openNetlink(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	if err := setSocketOptions(fd, cfg); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return netlinkSocket(fd), nil
}

// setSocketOptions sets the options cfg asks for on the bound socket fd
// and joins the conntrack DESTROY group.
func setSocketOptions(fd int, cfg ListenConfig) error {
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
	if cfg.Filter != nil {
		if err := attachFilter(fd, cfg.Filter); err != nil {
			return err
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, groupCTDestroy); err != nil {
		return fmt.Errorf("joining the conntrack DESTROY group: %w", err)
	}
	return nil
}

// openDumpSocket opens the Dumper's raw netlink socket in the namespace
// whose descriptor is nsFD, with a receive timeout of at most 250ms so that
// a read notices when its context is done.
func openDumpSocket(nsFD int, timeout time.Duration) (socket, error) {
	fd, err := openNetlink(nsFD)
	if err != nil {
		return nil, err
	}
	// Extended acknowledgements name the attribute the kernel refused.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	tv := unix.NsecToTimeval(int64(min(timeout, dumpPoll)))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting the receive timeout: %w", err)
	}
	return netlinkSocket(fd), nil
}

// attachFilter attaches f's program to the socket fd (SO_ATTACH_FILTER).
func attachFilter(fd int, f *EventFilter) error {
	if len(f.Program) == 0 {
		return nil
	}
	insns := make([]unix.SockFilter, len(f.Program))
	for i, in := range f.Program {
		insns[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	prog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attaching the event filter (%s): %w", f.Summary(), err)
	}
	return nil
}
