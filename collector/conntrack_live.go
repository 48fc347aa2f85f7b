package collector

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// ConntrackDumper reads the conntrack table; *ctnl.Dumper is one.
type ConntrackDumper interface {
	Dump(ctx context.Context, filter ctnl.DumpFilter, fn func([]ctnl.Flow) error) (ctnl.DumpStats, error)
	Lookup(ctx context.Context, f *ctnl.Flow) (ctnl.Flow, bool, error)
}

// Defaults of live accounting.
const (
	// DefaultPollCPUShare is the share of one CPU that dumps may use when
	// the interval adapts to the table: 4%, so that the whole exporter
	// stays under 5% on an idle table.
	DefaultPollCPUShare = 0.04
	// DefaultMinPollInterval and DefaultMaxPollInterval bound the
	// adaptive interval.
	DefaultMinPollInterval = 5 * time.Second
	DefaultMaxPollInterval = 10 * time.Minute
	// maxLookups bounds the entries looked up one by one after a dump;
	// the others missing are confirmed gone by the next dump.
	maxLookups = 1024
)

// LiveConfig configures live accounting.
type LiveConfig struct {
	// Interval is the time from the start of one dump to the start of the
	// next. 0 adapts it to the table: each dump's processor time divided
	// by CPUShare, between MinInterval and MaxInterval.
	Interval time.Duration
	// CPUShare, MinInterval and MaxInterval shape the adaptive interval;
	// zero values take the defaults.
	CPUShare                 float64
	MinInterval, MaxInterval time.Duration
	// Filter is passed to the kernel with every dump, so that it skips
	// entries the aggregator's filters would reject.
	Filter ctnl.DumpFilter
}

// poller dumps the table on its interval and feeds the aggregator.
type poller struct {
	d   ConntrackDumper
	l   ConntrackListener
	agg *flow.Aggregator
	cfg LiveConfig

	// found holds a flow a lookup found, for Dumped.
	found [1]ctnl.Flow
	// marks are the dumps whose gone flows wait for the listener to
	// drain, and when they were marked.
	marks []mark

	mu          sync.Mutex
	st          pollStats
	dumps, errs *tree.Desc
	duration    *tree.Desc
	cpu         *tree.Desc
	dumped      *tree.Desc
	interval    *tree.Desc
	lookups     *tree.Desc
	tracked     *tree.Desc
	tombstones  *tree.Desc
	resets      *tree.Desc
	closedOut   *tree.Desc
	late        *tree.Desc
	tableBytes  *tree.Desc
}

// mark is when the flows a dump found gone were marked.
type mark struct {
	dump uint32
	at   time.Time
}

// pollStats are the poller's own counts.
type pollStats struct {
	errors     uint64
	lookups    uint64
	last       ctnl.DumpStats
	cpu        time.Duration // all dumps and lookups
	interval   time.Duration
	haveDumped bool
	// avgCPU is a moving average of the processor time of a round, which
	// the adaptive interval follows.
	avgCPU time.Duration
}

// Live turns on live accounting: Poll then dumps the table with d. The
// aggregator must have been made with flow.Config.Live.
func (c *Conntrack) Live(d ConntrackDumper, cfg LiveConfig) {
	if cfg.CPUShare <= 0 {
		cfg.CPUShare = DefaultPollCPUShare
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultMinPollInterval
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = DefaultMaxPollInterval
	}
	const ns = namespace + "_conntrack_"
	c.poll = &poller{
		d: d, l: c.l, agg: c.agg, cfg: cfg,
		dumps: tree.NewDesc(ns+"dumps_total",
			"Conntrack table dumps finished for live accounting.", tree.Counter),
		errs: tree.NewDesc(ns+"dump_errors_total",
			"Conntrack table dumps that failed.", tree.Counter),
		duration: tree.NewDesc(ns+"dump_duration_seconds",
			"Wall time of the latest conntrack table dump.", tree.Gauge),
		cpu: tree.NewDesc(ns+"dump_cpu_seconds_total",
			"Processor time of conntrack table dumps and lookups, kernel and exporter together.", tree.Counter),
		dumped: tree.NewDesc(ns+"dump_entries",
			"Entries the latest conntrack table dump listed that the filters accept.", tree.Gauge),
		interval: tree.NewDesc(ns+"poll_interval_seconds",
			"Time between the starts of two conntrack table dumps, as set or as adapted to the table.", tree.Gauge),
		lookups: tree.NewDesc(ns+"flow_lookups_total",
			"Flows a dump missed that were asked for one by one.", tree.Counter),
		tracked: tree.NewDesc(ns+"flows_tracked",
			"Conntrack flows followed from dump to dump by live accounting.", tree.Gauge),
		tombstones: tree.NewDesc(ns+"flow_tombstones",
			"Ended flows kept until a later dump has finished, so that none is counted twice.", tree.Gauge),
		resets: tree.NewDesc(ns+"flow_resets_total",
			"Flows whose counters went down between two readings: another tool zeroed them (conntrack -L -z) or a new flow took an old one's identity.", tree.Counter),
		closedOut: tree.NewDesc(ns+"flows_closed_out_total",
			"Flows that left the table without a DESTROY event reaching the exporter, counted as ended from the dumps.", tree.Counter),
		late: tree.NewDesc(ns+"late_destroy_events_total",
			"DESTROY events of flows already closed out; only their rest was added.", tree.Counter),
		tableBytes: tree.NewDesc(ns+"flow_table_bytes",
			"Memory of the table of flows followed by live accounting, tombstones included.", tree.Gauge),
	}
}

// Poll dumps the table until ctx is done: the first dump is the baseline,
// every later one counts what each flow moved since. A dump that fails is
// logged (once, until dumps work again) and tried again. It returns nil when
// ctx is done, and at once when live accounting is off.
func (c *Conntrack) Poll(ctx context.Context, logger *slog.Logger) error {
	if c.poll == nil {
		return nil
	}
	p := c.poll
	failing := false
	for ctx.Err() == nil {
		start := time.Now()
		st, err := p.round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := p.next(st, err)
		switch {
		case err != nil && !failing:
			logger.Error("conntrack table dump failed; live accounting retries", "err", err, "retry_in", wait)
			failing = true
		case err == nil && failing:
			logger.Info("conntrack table dumps work again")
			failing = false
		}
		t := time.NewTimer(time.Until(start.Add(wait)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	return nil
}

// round runs one dump, looks up the flows it missed and ends it.
func (p *poller) round(ctx context.Context) (ctnl.DumpStats, error) {
	// One thread for the whole round, so that its processor time is the
	// round's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dump := p.agg.BeginDump()
	st, err := p.d.Dump(ctx, p.cfg.Filter, func(fs []ctnl.Flow) error {
		p.agg.Dumped(fs)
		return nil
	})
	if err != nil {
		p.agg.EndDump(false, p.closable())
		return st, err
	}
	missing := p.agg.Missing()
	var gone []ctnl.Flow
	lookupStart := threadCPUNow()
	looked := 0
	for i := range missing {
		m := &missing[i]
		if looked == maxLookups {
			gone = append(gone, missing[i:]...)
			break
		}
		looked++
		e, found, err := p.d.Lookup(ctx, m)
		switch {
		case err != nil:
			// Unknown: the next dump will tell.
		case found && e.ID == m.ID && e.Start == m.Start:
			p.found[0] = e
			p.agg.Dumped(p.found[:])
		default:
			gone = append(gone, *m)
		}
	}
	p.agg.Gone(gone)
	if len(gone) > 0 {
		p.marks = append(p.marks, mark{dump: dump, at: time.Now()})
	}
	p.agg.EndDump(true, p.closable())
	st.CPU += threadCPUNow() - lookupStart
	p.mu.Lock()
	p.st.lookups += uint64(looked)
	p.mu.Unlock()
	return st, nil
}

// closable returns the latest dump whose gone flows may be closed out: a
// flow the kernel no longer holds sent its DESTROY event, if it had one,
// before it left the table, so once the listener has drained everything
// queued after the flow was found gone, no event of it can still come.
func (p *poller) closable() uint32 {
	drained := p.l.Drained()
	var through uint32
	i := 0
	for ; i < len(p.marks) && p.marks[i].at.Before(drained); i++ {
		through = p.marks[i].dump
	}
	p.marks = p.marks[i:]
	return through
}

// next records a round and returns the time from its start to the next.
func (p *poller) next(st ctnl.DumpStats, err error) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.cpu += st.CPU
	if err != nil {
		p.st.errors++
	} else {
		p.st.last, p.st.haveDumped = st, true
	}
	if err == nil {
		// An average, but never below the latest round: a table that
		// grows is followed at once, one that shrinks gradually.
		if p.st.avgCPU == 0 {
			p.st.avgCPU = st.CPU
		}
		p.st.avgCPU = max((p.st.avgCPU+st.CPU)/2, st.CPU)
	}
	wait := p.cfg.Interval
	if wait <= 0 {
		wait = time.Duration(float64(p.st.avgCPU) / p.cfg.CPUShare)
		wait = min(max(wait, p.cfg.MinInterval), p.cfg.MaxInterval)
	}
	if err != nil {
		wait = max(wait, time.Second)
	}
	p.st.interval = wait
	return wait
}

// stats returns a copy of the poller's counts.
func (p *poller) stats() pollStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// add adds the live accounting samples to b.
func (p *poller) add(b *tree.Builder, st pollStats) {
	path := func(leaf string) []string { return []string{"exporter", "conntrack", leaf} }
	ls, _ := p.agg.LiveStats()
	b.Add(p.dumps, float64(ls.Dumps), path("dumps"))
	b.Add(p.errs, float64(st.errors), path("dump_errors"))
	b.Add(p.cpu, st.cpu.Seconds(), path("dump_cpu_seconds"))
	b.Add(p.lookups, float64(st.lookups), path("flow_lookups"))
	if st.haveDumped {
		b.Add(p.duration, st.last.Duration.Seconds(), path("dump_duration_seconds"))
		b.Add(p.dumped, float64(ls.Entries), path("dump_entries"))
		b.Add(p.interval, st.interval.Seconds(), path("poll_interval_seconds"))
	}
	b.Add(p.tracked, float64(ls.Tracked), path("flows_tracked"))
	b.Add(p.tombstones, float64(ls.Tombstones), path("flow_tombstones"))
	b.Add(p.resets, float64(ls.Resets), path("flow_resets"))
	b.Add(p.closedOut, float64(ls.ClosedOut), path("flows_closed_out"))
	b.Add(p.late, float64(ls.LateDestroys), path("late_destroy_events"))
	b.Add(p.tableBytes, float64(ls.TableBytes), path("flow_table_bytes"))
}

// threadCPUNow returns the processor time of the calling thread.
func threadCPUNow() time.Duration {
	return ctnl.ThreadCPU()
}

// DumpFilterFor returns the dump filter that lets the kernel skip the
// entries f would reject, as far as it can tell them by exact values.
func DumpFilterFor(f *flow.Filter) ctnl.DumpFilter {
	n := f.Narrowing()
	df := ctnl.DumpFilter{Family: n.Family}
	if n.Mark != nil {
		df.HasMark, df.Mark, df.MarkMask = true, n.Mark.Value, n.Mark.Mask
	}
	if n.Zone != nil {
		df.HasZone, df.Zone = true, *n.Zone
	}
	return df
}
