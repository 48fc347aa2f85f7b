package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/config"
	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/task"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
	"github.com/netfilter-exporter/netfilter_exporter/nftables"
)

// followEvery is how often the --netns path is looked at.
const followEvery = 2 * time.Second

// kernel is everything that talks to the kernel of the watched network
// namespace: the collectors' kernel clients and the tasks that feed them
// (conntrack accounting, the over-quota listener). When the namespace
// changes it is closed and opened again in the new one; the conntrack
// pipeline, whose sums must never go down, stays.
type kernel struct {
	s      *config.Settings
	logger *slog.Logger
	ct     *flow.Pipeline // nil without the conntrack collector
	set    *collector.Set

	tasks   *task.Group // of the namespace open now; nil while none is
	closers []io.Closer

	// mu guards filters and ctc, which a reload changes while the
	// namespace follower may open the collectors again.
	mu sync.Mutex
	// filters are the conntrack settings of the latest configuration
	// file: the start's until a reload (s keeps the start's).
	filters *config.Conntrack
	// ctc is the conntrack collector of the namespace open now.
	ctc *collector.Conntrack
}

func newKernel(s *config.Settings, logger *slog.Logger) (*kernel, error) {
	k := &kernel{s: s, logger: logger, filters: &s.Conntrack}
	if s.Collectors.Conntrack {
		cfg := s.Conntrack.Flow
		cfg.PollInterval, cfg.EnableAccounting, cfg.Logger = s.Conntrack.PollInterval, s.Conntrack.EnableAccounting, logger
		// As many flows as /top shows.
		cfg.Top.Flows = exposition.DefaultTopMaxRows
		ct, err := flow.New(cfg)
		if err != nil {
			return nil, err
		}
		k.ct = ct
	}
	return k, nil
}

// open makes the enabled collectors in namespace ns and starts their tasks.
// A collector that cannot start (module missing, permission denied) is
// served as failing, with the reason; the others go on.
func (k *kernel) open(ctx context.Context, ns *netns.Handle) map[string]collector.Collector {
	k.tasks = task.NewGroup(ctx, k.logger)
	fd := ns.FD()
	cs := make(map[string]collector.Collector)
	add := func(name string, c collector.Collector, err error) {
		if err != nil {
			err = netns.CapabilityHint(err, "CAP_NET_ADMIN")
			k.logger.Error("collector cannot start; it will report success 0", "collector", name, "err", err)
			c = collector.Failing(fmt.Errorf("%s: %w", name, err))
		}
		cs[name] = c
	}
	if k.s.Collectors.Nfacct {
		c, err := k.nfacct(fd)
		add("nfacct", c, err)
	}
	if k.s.Collectors.Nftables {
		var c collector.Collector
		conn, err := nftables.Dial(&nftables.Config{NetNS: fd, Timeout: k.s.Collectors.NetlinkTimeout})
		if err == nil {
			k.closers = append(k.closers, conn)
			c, err = collector.NewNftables(conn, k.s.Nftables)
		}
		add("nftables", c, err)
	}
	if k.s.Collectors.Conntrack {
		c, err := k.conntrack(fd)
		add("conntrack", c, err)
	}
	if k.s.Collectors.ConntrackStats {
		var c collector.Collector
		client, err := ctnl.Dial(&ctnl.Config{NetNS: fd, Timeout: k.s.Collectors.NetlinkTimeout})
		if err == nil {
			k.closers = append(k.closers, client)
			c = collector.NewConntrackStats(client)
		}
		add("conntrack_stats", c, err)
	}
	k.nflog(fd, add)
	return cs
}

// close stops the namespace's tasks and closes its clients.
func (k *kernel) close() {
	if k.tasks != nil {
		k.tasks.Stop()
		k.tasks = nil
	}
	for _, c := range k.closers {
		c.Close()
	}
	k.closers = nil
}

// nfacct opens the nfacct client and, if asked, the over-quota listener.
func (k *kernel) nfacct(fd int) (collector.Collector, error) {
	cfg := &nfacct.Config{NetNS: fd, Timeout: k.s.Collectors.NetlinkTimeout}
	conn, err := nfacct.Dial(cfg)
	if err != nil {
		return nil, err
	}
	c, err := collector.NewNfacct(conn, k.s.Nfacct.NfacctConfig)
	if err != nil {
		conn.Close()
		return nil, err
	}
	k.closers = append(k.closers, conn)
	if !k.s.Nfacct.OverQuotaEvents {
		return c, nil
	}
	l, err := nfacct.ListenOverQuota(cfg)
	if err != nil {
		// Counting notifications is a bonus: the counters still work.
		k.logger.Warn("not counting nfacct over-quota notifications", "err", err)
		return c, nil
	}
	k.closers = append(k.closers, l)
	k.tasks.Go("nfacct over-quota listener", task.Retry("nfacct over-quota listener",
		func(ctx context.Context) error { return c.WatchOverQuota(ctx, l) }, task.DefaultBackoff, k.logger))
	return c, nil
}

// conntrack opens conntrack accounting in the namespace fd: the DESTROY
// listener and, with live accounting, the table dumper, and starts it.
func (k *kernel) conntrack(fd int) (collector.Collector, error) {
	s := &k.s.Conntrack
	k.mu.Lock()
	sum := k.filters.FilterSummary()
	k.mu.Unlock()
	if sum != "" {
		k.logger.Info(sum)
	}
	err := k.ct.Open(fd, func() (flow.Conns, error) {
		l, err := ctnl.Listen(&ctnl.ListenConfig{
			NetNS:         fd,
			ReadBuffer:    s.ReceiveBuffer,
			MaxReadBuffer: s.ReceiveBufferMax,
			NoENOBUFS:     s.NoENOBUFS,
			Reliable:      s.Reliable,
			Method:        s.Method,
			Filter:        k.ct.EventFilter(),
		})
		if err != nil {
			return flow.Conns{}, err
		}
		if m, why := l.Method(); why != nil {
			k.logger.Info("conntrack events are received with "+string(m), "io_uring", why)
		} else {
			k.logger.Info("conntrack events are received with " + string(m))
		}
		c := flow.Conns{Listener: l}
		if s.Flow.Live {
			d, err := ctnl.DialDumper(&ctnl.DumpConfig{NetNS: fd, Timeout: k.s.Collectors.NetlinkTimeout, ReadSize: s.DumpReadSize})
			if err != nil {
				l.Close()
				return flow.Conns{}, err
			}
			k.closers = append(k.closers, d)
			c.Dumper = d
		}
		k.closers = append(k.closers, l)
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	k.tasks.Go("conntrack accounting", k.ct.Run)
	c := collector.NewConntrack(k.ct)
	k.mu.Lock()
	c.FilterPlaces(filterPlaces(k.filters)...)
	k.ctc = c
	k.mu.Unlock()
	return c, nil
}

// filterPlaces returns where the filters of s run, for
// netfilter_conntrack_filter_info: none without filters.
func filterPlaces(s *config.Conntrack) []string {
	accept, deny := s.Flow.Filter.Rules()
	switch {
	case accept+deny == 0:
		return nil
	case s.EventFilter != nil:
		return []string{"kernel", "userspace"}
	}
	return []string{"userspace"}
}

// reload applies the settings of a reloaded configuration file: the
// conntrack pipeline swaps its networks, ports and filters, keeping its
// series and baseline (flow.Pipeline.Reconfigure). It is the apply function
// of the config.Reloader.
func (k *kernel) reload(s *config.Settings) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ct != nil {
		c := &s.Conntrack
		r, err := k.ct.Reconfigure(flow.Update{Networks: c.Flow.Networks, Ports: c.Flow.Ports, Filter: c.Flow.Filter, EventFilter: c.Flow.EventFilter})
		if err != nil {
			return fmt.Errorf("conntrack: %w", err)
		}
		k.logger.Info("conntrack accounting reconfigured: series whose keys read the same continue, the others start anew", "series_kept", r.Kept, "series_removed", r.Removed)
		if sum := c.FilterSummary(); sum != "" {
			k.logger.Info(sum)
		}
		if k.ctc != nil {
			k.ctc.FilterPlaces(filterPlaces(c)...)
		}
	}
	k.filters = &s.Conntrack
	return nil
}

// follow returns the task that watches the --netns path: when the
// namespace goes away the collectors fail, naming it, and when a namespace
// appears at the path again they are opened in it.
func (k *kernel) follow(ns *netns.Follower) task.Func {
	return func(ctx context.Context) error {
		t := time.NewTicker(followEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			changed, why, err := ns.Check()
			if err != nil {
				k.logger.Warn("cannot check the network namespace", "netns", ns.Path(), "err", err)
				continue
			}
			if !changed {
				continue
			}
			k.close()
			h, _, err := ns.Current()
			if err != nil {
				k.logger.Error(why+"; the collectors fail until a network namespace appears there again", "netns", ns.Path())
				for _, name := range k.set.Names() {
					k.set.Replace(name, collector.Failing(fmt.Errorf("%s: %w", name, err)))
				}
				continue
			}
			k.logger.Info(why+"; the collectors were reopened in it", "netns", ns.Path())
			for name, c := range k.open(ctx, h) {
				k.set.Replace(name, c)
			}
		}
	}
}

// topPage serves the top talkers of the conntrack pipeline on /top.
type topPage struct{ ct *flow.Pipeline }

// Top returns the pipeline's top talkers as the page shows them.
func (t topPage) Top(context.Context) (exposition.TopReading, error) {
	if t.ct == nil {
		return exposition.TopReading{}, nil
	}
	r := t.ct.Top()
	out := exposition.TopReading{Enabled: r.On, Tracked: r.Tracked, Capacity: r.Capacity, Window: r.Window, LiveAccounting: r.Live,
		FlowsInterval: r.FlowsInterval}
	for _, k := range r.Keys {
		out.Keys = append(out.Keys, string(k))
	}
	for _, tk := range r.Talkers {
		out.Rows = append(out.Rows, exposition.TopRow{Values: tk.Values, OrigBytes: tk.OrigBytes, OrigPackets: tk.OrigPackets,
			ReplyBytes: tk.ReplyBytes, ReplyPackets: tk.ReplyPackets, BytesError: tk.BytesError})
	}
	for _, f := range r.Flows {
		tf := exposition.TopFlow{Proto: flow.ProtoName(f.Proto), Src: f.Src.String(), Dst: f.Dst.String(), SrcPort: f.SPort, DstPort: f.DPort,
			NAT: f.NAT, Bytes: f.OrigBytes + f.ReplyBytes, BytesPerSecond: f.BytesPerSecond}
		if f.NAT {
			tf.ReplySrc, tf.ReplyDst, tf.ReplySrcPort, tf.ReplyDstPort = f.ReplySrc.String(), f.ReplyDst.String(), f.ReplySPort, f.ReplyDPort
		}
		out.Flows = append(out.Flows, tf)
	}
	return out, nil
}
