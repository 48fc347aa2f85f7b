package flow

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/internal/task"
)

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
	// burstRate is the event rate, per second, above which a dump due
	// waits for the burst to pass (see poller.yield); burstSample is
	// how long the rate is measured for, at most.
	burstRate   = 50000
	burstSample = 100 * time.Millisecond
)

// pollConfig shapes the dumps of live accounting.
type pollConfig struct {
	// interval is the time from the start of one dump to the start of the
	// next. 0 adapts it to the table: each dump's processor time divided
	// by cpuShare, between minInterval and maxInterval.
	interval                 time.Duration
	cpuShare                 float64
	minInterval, maxInterval time.Duration
}

// newPollConfig returns the dump configuration of interval (0: adaptive),
// with the default bounds.
func newPollConfig(interval time.Duration) pollConfig {
	return pollConfig{
		interval: interval,
		cpuShare: DefaultPollCPUShare, minInterval: DefaultMinPollInterval, maxInterval: DefaultMaxPollInterval,
	}
}

// poller dumps the table on its interval and feeds the aggregator.
type poller struct {
	d   Dumper
	l   Listener
	agg *aggregator
	cfg pollConfig

	// found holds a flow a lookup found, for countDumped.
	found [1]ctnl.Flow
	// marks are the dumps whose gone flows wait for the listener to
	// drain, and when they were marked.
	marks []mark

	mu sync.Mutex
	st PollStats
	// avgCPU is a moving average of the processor time of a round, which
	// the adaptive interval follows.
	avgCPU time.Duration
}

// mark is when the flows a dump found gone were marked.
type mark struct {
	dump uint32
	at   time.Time
}

// run dumps the table until ctx is done: the first dump is the baseline,
// every later one counts what each flow moved since. A dump that fails is
// logged (once, until dumps work again) and tried again.
func (p *poller) run(ctx context.Context, logger *slog.Logger) {
	failing := false
	for ctx.Err() == nil {
		start := time.Now()
		st, err := p.round(ctx)
		if ctx.Err() != nil {
			return
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
		if !task.Sleep(ctx, time.Until(start.Add(wait))) || !p.yield(ctx, wait) {
			return
		}
	}
}

// yield waits, before a dump due, while the listener receives a burst of
// events (more than burstRate a second), for at most limit, and reports
// whether ctx is still alive. A burst is flows ending, which the events
// count exactly: a dump during it would list flows about to be destroyed,
// at the price of a dump of the full table (a second or more of processor
// time at a million flows), and take the processor the listener needs to
// keep up. The limit keeps a steady high rate from stopping the dumps: it
// at most doubles their interval.
func (p *poller) yield(ctx context.Context, limit time.Duration) bool {
	sample := min(burstSample, limit/20)
	if sample <= 0 {
		return ctx.Err() == nil
	}
	deadline := time.Now().Add(limit)
	before := p.events()
	for {
		if !task.Sleep(ctx, sample) {
			return false
		}
		now := p.events()
		if float64(now-before) < burstRate*sample.Seconds() || !time.Now().Before(deadline) {
			return true
		}
		p.mu.Lock()
		p.st.Yields++
		p.mu.Unlock()
		before = now
	}
}

// events returns how many events the listener has delivered.
func (p *poller) events() uint64 {
	s, _ := p.l.Stats() // Events is set even when the kernel's counts are not
	return s.Events
}

// round runs one dump, looks up the flows it missed and ends it.
func (p *poller) round(ctx context.Context) (ctnl.DumpStats, error) {
	// One thread for the whole round, so that its processor time is the
	// round's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dump, filter := p.agg.beginDump()
	st, err := p.d.Dump(ctx, filter, func(fs []ctnl.Flow) error {
		p.agg.countDumped(fs)
		return nil
	})
	if err != nil {
		p.agg.endDump(false, p.closable())
		return st, err
	}
	missing := p.agg.missing()
	var gone []ctnl.Flow
	lookupStart := ctnl.ThreadCPU()
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
			p.agg.countDumped(p.found[:])
		default:
			gone = append(gone, *m)
		}
	}
	p.agg.markGone(gone)
	if len(gone) > 0 {
		p.marks = append(p.marks, mark{dump: dump, at: time.Now()})
	}
	p.agg.endDump(true, p.closable())
	st.CPU += ctnl.ThreadCPU() - lookupStart
	p.mu.Lock()
	p.st.Lookups += uint64(looked)
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
	p.st.CPU += st.CPU
	if err != nil {
		p.st.Errors++
	} else {
		p.st.Last, p.st.Dumped = st, true
	}
	if err == nil {
		// An average, but never below the latest round: a table that
		// grows is followed at once, one that shrinks gradually.
		if p.avgCPU == 0 {
			p.avgCPU = st.CPU
		}
		p.avgCPU = max((p.avgCPU+st.CPU)/2, st.CPU)
	}
	wait := p.cfg.interval
	if wait <= 0 {
		wait = time.Duration(float64(p.avgCPU) / p.cfg.cpuShare)
		wait = min(max(wait, p.cfg.minInterval), p.cfg.maxInterval)
	}
	if err != nil {
		wait = max(wait, time.Second)
	}
	p.st.Interval = wait
	return wait
}

// stats returns a copy of the poller's counts.
func (p *poller) stats() PollStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// dumpFilterFor returns the dump filter that lets the kernel skip the
// entries f would reject, as far as it can tell them by exact values.
func dumpFilterFor(f *Filter) ctnl.DumpFilter {
	n := f.narrowing()
	df := ctnl.DumpFilter{Family: n.Family}
	if n.Mark != nil {
		df.HasMark, df.Mark, df.MarkMask = true, n.Mark.Value, n.Mark.Mask
	}
	if n.Zone != nil {
		df.HasZone, df.Zone = true, *n.Zone
	}
	return df
}
