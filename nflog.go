package main

import (
	"net"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/task"
	"github.com/netfilter-exporter/netfilter_exporter/nflog"
)

// nflog binds the --nflog.group groups in namespace fd, when any is given
// (and group 0 with --nflog.conntrack-invalid, whose sysctls it sets and
// restores when the namespace is closed), starts the listener that counts
// their packets, and adds the collector with add.
func (k *kernel) nflog(fd int, add func(string, collector.Collector, error)) {
	s := &k.s.Nflog
	if !k.s.Collectors.Nflog {
		return
	}
	groups := s.Groups
	if s.ConntrackInvalid && !slices.Contains(groups, nflog.InvalidGroup) {
		groups = append(slices.Clip(groups), nflog.InvalidGroup)
	}
	l, err := nflog.Listen(&nflog.Config{
		NetNS:         fd,
		Groups:        groups,
		Timeout:       k.s.Collectors.NetlinkTimeout,
		ReadBuffer:    s.ReceiveBuffer,
		MaxReadBuffer: s.ReceiveBufferMax,
	})
	if err != nil {
		add("nflog", nil, err)
		return
	}
	cfg := s.NflogConfig
	cfg.InterfaceName = func(i uint32) string {
		var name string
		_ = netns.Do(fd, func() error {
			if ifc, err := net.InterfaceByIndex(int(i)); err == nil {
				name = ifc.Name
			}
			return nil
		})
		return name
	}
	c, err := collector.NewNflog(l, cfg)
	if err != nil {
		l.Close()
		add("nflog", nil, err)
		return
	}
	k.closers = append(k.closers, l)
	logger := k.logger.With("collector", "nflog")
	if s.ConntrackInvalid {
		changes, err := nflog.EnableInvalidLogging(fd)
		if err != nil {
			logger.Error("--nflog.conntrack-invalid cannot make conntrack log invalid packets to nflog group 0; none will be counted", "err", err)
		}
		for _, ch := range changes {
			logger.Info("set for --nflog.conntrack-invalid; restored at exit", "sysctl", ch.Name, "was", ch.Old, "now", ch.New)
		}
		if len(changes) > 0 {
			// A descriptor of its own: when --netns changes, the
			// follower closes the old namespace's before this runs.
			nsFD := fd
			if fd != 0 {
				if nsFD, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
					logger.Error("cannot keep the namespace open to restore what --nflog.conntrack-invalid set", "err", err)
					nsFD = fd
				}
			}
			k.closers = append(k.closers, closerFunc(func() error {
				err := nflog.RestoreSysctls(nsFD, changes)
				if nsFD != fd {
					unix.Close(nsFD)
				}
				if err != nil {
					logger.Error("cannot restore what --nflog.conntrack-invalid set", "err", err)
				} else {
					logger.Info("restored the sysctls --nflog.conntrack-invalid set", "count", len(changes))
				}
				return err
			}))
		}
	}
	logger.Info("counting logged packets", "groups", groups)
	k.tasks.Go("nflog listener", task.Retry("nflog listener", c.Listen, task.DefaultBackoff, logger))
	add("nflog", c, nil)
}

// closerFunc is an io.Closer that calls itself.
type closerFunc func() error

// Close calls f.
func (f closerFunc) Close() error { return f() }
