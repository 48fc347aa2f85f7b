package main

import (
	"net"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/task"
	"github.com/netfilter-exporter/netfilter_exporter/nflog"
)

// nflog binds the --nflog.group groups in namespace fd, when any is given,
// starts the listener that counts their packets, and adds the collector
// with add.
func (k *kernel) nflog(fd int, add func(string, collector.Collector, error)) {
	s := &k.s.Nflog
	if !k.s.Collectors.Nflog {
		return
	}
	l, err := nflog.Listen(&nflog.Config{
		NetNS:         fd,
		Groups:        s.Groups,
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
	logger.Info("counting logged packets", "groups", s.Groups)
	k.tasks.Go("nflog listener", task.Retry("nflog listener", c.Listen, task.DefaultBackoff, logger))
	add("nflog", c, nil)
}
