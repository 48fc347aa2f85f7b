package flow

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/internal/task"
)

// Listener delivers conntrack DESTROY events; *ctnl.Listener is one.
type Listener interface {
	Run(ctx context.Context, fn func([]ctnl.Flow)) error
	Stats() (ctnl.ListenerStats, error)
	// Drained returns a time before which every event queued for the
	// listener has been delivered.
	Drained() time.Time
	// SetFilter replaces the program the kernel runs on the listener's
	// events (nil: none) while Run may be receiving; if it fails, the
	// former program stays.
	SetFilter(f *ctnl.EventFilter) error
}

// Dumper reads the conntrack table; *ctnl.Dumper is one.
type Dumper interface {
	Dump(ctx context.Context, filter ctnl.DumpFilter, fn func([]ctnl.Flow) error) (ctnl.DumpStats, error)
	Lookup(ctx context.Context, f *ctnl.Flow) (ctnl.Flow, bool, error)
}

// Conns are the kernel clients of one network namespace, dialled by the
// caller and closed by it once Run has returned.
type Conns struct {
	Listener Listener
	// Dumper reads the table for live accounting; nil when it is off.
	Dumper Dumper
}

// Stats are the counts of a Pipeline beyond its series: the event
// listener's, the table dumps' and live accounting's.
type Stats struct {
	// ListenerUp tells whether the event listener is receiving, rather
	// than failed and retrying (or not started).
	ListenerUp bool
	// Listener are the listener's counts. ListenerErr says why the
	// kernel's drop counter could not be read: then Lost, Drops,
	// BufferGrowths and ReadBuffer are unknown.
	Listener    ctnl.ListenerStats
	ListenerErr error
	// Live tells whether live accounting runs, with a Dumper: only then
	// do Poll and Flows mean anything.
	Live bool
	// Poll are the counts of the dumps in the namespace open now.
	Poll PollStats
	// Flows are the counts of the flows followed from dump to dump.
	Flows LiveStats
}

// PollStats are the counts of the table dumps in one namespace.
type PollStats struct {
	// Errors counts the dumps that failed, Lookups the flows a dump
	// missed that were asked for one by one.
	Errors, Lookups uint64
	// Yields counts the times a dump due waited a sample's length because
	// the listener was receiving a burst of events.
	Yields uint64
	// CPU is the processor time of every dump and lookup, kernel and
	// exporter together.
	CPU time.Duration
	// Dumped tells whether a dump has succeeded: only then do Last (the
	// latest that did) and Interval mean anything.
	Dumped bool
	Last   ctnl.DumpStats
	// Interval is the time from the start of the latest dump to the start
	// of the next, as set or as adapted to the table.
	Interval time.Duration
}

// Pipeline is conntrack accounting: it sums the DESTROY events of its
// listener and, with live accounting, the table dumps into a bounded set of
// series. Make one with New, give it the kernel clients of a
// namespace with Open, and Run it; Read and Stats serve scrapes. Its methods
// are safe for concurrent use.
type Pipeline struct {
	agg    *aggregator
	logger *slog.Logger // for Open
	runLog *slog.Logger // for Run
	enable bool
	poll   pollConfig

	up atomic.Bool

	// reconf serializes Open and Reconfigure.
	reconf sync.Mutex

	mu sync.Mutex
	// cur is what the latest Open made; nil before.
	cur *session
	// running is the session Run is receiving with; nil while none is.
	running *session
	// eventFilter is the program the listeners are to run on their
	// events (EventFilter); nil judges every event in userspace.
	eventFilter *ctnl.EventFilter
}

// session is the pipeline in one namespace: its clients and its dumps.
type session struct {
	conns Conns
	poll  *poller // nil without live accounting
	// filter is the program the listener runs; guarded by Pipeline.mu.
	filter *ctnl.EventFilter
}

// New returns a Pipeline configured by cfg, after checking it.
func New(cfg Config) (*Pipeline, error) {
	agg, err := newAggregator(cfg)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{
		agg:         agg,
		logger:      logger,
		runLog:      logger.With("collector", "conntrack"),
		enable:      cfg.EnableAccounting,
		poll:        newPollConfig(cfg.PollInterval),
		eventFilter: cfg.EventFilter,
	}, nil
}

// EventFilter returns the program the kernel is to run on the events of a
// listener that Open's dial makes: Config.EventFilter, or what the latest
// Reconfigure set. Call it from dial.
func (p *Pipeline) EventFilter() *ctnl.EventFilter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eventFilter
}

// Open makes the pipeline count in the network namespace netns (0: the
// exporter's own): it checks the sysctls accounting needs there (with
// Config.EnableAccounting, switches them on), logging what accounting misses
// while they are off; then dial opens the namespace's kernel clients, which
// the next Run uses. With Config.Live, dial returns a Dumper too (without
// one, no dump counts flows while they run). If the
// pipeline was open in another namespace, its flows are forgotten first: the
// flows still followed count as ended, closed out with what the dumps saw of
// them, and the next dump is a baseline again; series and their sums stay.
// Call Open while no Run is running; it returns the error of dial, which
// gives its listener the program EventFilter returns.
func (p *Pipeline) Open(netns int, dial func() (Conns, error)) error {
	p.reconf.Lock()
	defer p.reconf.Unlock()
	p.mu.Lock()
	reopen := p.cur != nil
	p.cur = nil
	p.mu.Unlock()
	if reopen {
		p.agg.resetLive()
	}
	p.checkSysctls(netns)
	c, err := dial()
	if err != nil {
		return err
	}
	s := &session{conns: c}
	if p.agg.live != nil && c.Dumper != nil {
		s.poll = &poller{d: c.Dumper, l: c.Listener, agg: p.agg, cfg: p.poll}
	}
	p.mu.Lock()
	// No Reconfigure ran since dial asked for the filter.
	s.filter = p.eventFilter
	p.cur = s
	p.mu.Unlock()
	return nil
}

// Run counts with the clients of the latest Open until ctx is done, then
// returns nil: it receives DESTROY events, trying again after the listener
// fails, and with live accounting dumps the table on its interval. It fails
// at once if Open has not succeeded.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	s := p.cur
	p.mu.Unlock()
	if s == nil {
		return errNotOpen
	}
	p.mu.Lock()
	p.running = s
	if s.filter != p.eventFilter {
		// A Reconfigure came between Open and Run.
		if err := s.conns.Listener.SetFilter(p.eventFilter); err != nil {
			p.runLog.Error("the kernel's event filter was not replaced: it judges events by the former filters, userspace by the new ones", "err", err)
		} else {
			s.filter = p.eventFilter
		}
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running = nil
		p.mu.Unlock()
	}()
	var wg sync.WaitGroup
	if s.poll != nil {
		wg.Go(func() { s.poll.run(ctx, p.runLog) })
	}
	listen := func(ctx context.Context) error { return p.listen(ctx, s.conns.Listener) }
	err := task.Retry("conntrack listener", listen, task.DefaultBackoff, p.runLog)(ctx)
	wg.Wait()
	return err
}

// listen receives DESTROY events from l and counts them until ctx is done
// (it then returns nil) or l fails. ListenerUp reads true meanwhile.
func (p *Pipeline) listen(ctx context.Context, l Listener) error {
	p.up.Store(true)
	defer p.up.Store(false)
	err := l.Run(ctx, p.agg.countDestroyed)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errListenerStopped
	}
	return fmt.Errorf("conntrack listener: %w", err)
}

// Keys returns the keys series are grouped by, in order.
func (p *Pipeline) Keys() []Key {
	return p.agg.Keys()
}

// Read removes the series idle past Config.SeriesTTL, then copies every
// series, histogram and count into r, in a stable order, reusing the memory
// r holds from an earlier reading: nothing r held before may be used
// afterwards but what Read put there.
func (p *Pipeline) Read(ctx context.Context, r *Reading) error {
	return p.agg.ReadInto(ctx, r)
}

// Stats returns the counts of the listener, the dumps and live accounting.
// Read them before the series (Read): events and dumps are counted after
// they are summed, so the counts never run ahead of the series.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	s := p.cur
	p.mu.Unlock()
	var st Stats
	if s != nil {
		st.Listener, st.ListenerErr = s.conns.Listener.Stats()
		if s.poll != nil {
			st.Live, st.Poll = true, s.poll.stats()
			st.Flows, _ = p.agg.liveStats()
		}
	}
	st.ListenerUp = p.up.Load()
	return st
}
