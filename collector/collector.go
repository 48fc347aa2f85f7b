package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// namespace prefixes every metric name of the exporter.
const namespace = "netfilter"

var errPanic = errors.New("collector panicked")

// Collector reads one part of netfilter and adds its samples to a Builder.
// Update must honour ctx; it may be called concurrently with itself only if
// the implementation says so (a Set never does that for one snapshot).
type Collector interface {
	Update(ctx context.Context, b *tree.Builder) error
}

var (
	successDesc = tree.NewDesc(namespace+"_exporter_collector_success",
		"Whether the collector's last update succeeded (1) or failed (0).", tree.Gauge, "collector")
	durationDesc = tree.NewDesc(namespace+"_exporter_collector_duration_seconds",
		"How long the collector's last update took.", tree.Gauge, "collector")
)

// Set runs named collectors and assembles their samples into snapshots.
type Set struct {
	names []string
	// mu guards collectors, which Replace changes while snapshots run.
	mu         sync.RWMutex
	collectors map[string]Collector
	timeout    time.Duration
	logger     *slog.Logger
	now        func() time.Time
	// statusMu guards status: per collector name, whether its Update has
	// succeeded once, and its latest error.
	statusMu sync.Mutex
	status   map[string]*status
}

// status is what readiness knows of one collector.
type status struct {
	succeeded bool
	// err is the latest update's error; nil before the first answer and
	// after a success.
	err error
}

// NewSet returns a Set of the collectors given by name. timeout bounds each
// snapshot; a collector that has not answered by then is counted as failed
// and its samples are left out.
func NewSet(collectors map[string]Collector, timeout time.Duration, logger *slog.Logger) *Set {
	names := make([]string, 0, len(collectors))
	for n := range collectors {
		names = append(names, n)
	}
	slices.Sort(names)
	st := make(map[string]*status, len(names))
	for _, n := range names {
		st[n] = new(status)
	}
	return &Set{names: names, collectors: collectors, timeout: timeout, logger: logger, now: time.Now, status: st}
}

// Names returns the names of the collectors in the Set, sorted.
func (s *Set) Names() []string {
	return slices.Clone(s.names)
}

// NotReady returns, sorted by collector name, one line for each collector
// that has not yet succeeded once: its name and why (its latest error, or
// that it has not answered yet). The exporter is ready when it returns
// none. Once a collector has succeeded it stays ready: a later failure
// shows in netfilter_exporter_collector_success, not in readiness.
func (s *Set) NotReady() []string {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	var out []string
	for _, n := range s.names {
		st := s.status[n]
		switch {
		case st.succeeded:
		case st.err != nil:
			out = append(out, n+": "+firstLine(st.err.Error(), maxReasonLen))
		default:
			out = append(out, n+": no answer yet")
		}
	}
	return out
}

// maxReasonLen bounds the reason NotReady gives for one collector.
const maxReasonLen = 300

// firstLine returns the first line of s, cut to at most n bytes.
func firstLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

type result struct {
	name     string
	samples  *tree.Builder
	err      error
	duration time.Duration
}

// Snapshot runs every collector once, concurrently, and returns their
// samples followed by each collector's success and duration, and their
// tables. A failing or
// panicking collector is logged and reported as failed; it never takes the
// others down.
func (s *Set) Snapshot(ctx context.Context) *tree.Snapshot {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	snap := &tree.Snapshot{Time: s.now()}
	results := make(chan result, len(s.names))
	for _, name := range s.names {
		go func() {
			results <- s.run(ctx, name, s.collector(name))
		}()
	}
	byName := make(map[string]result, len(s.names))
	for range s.names {
		select {
		case r := <-results:
			byName[r.name] = r
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	var self tree.Builder
	taken := make([]*tree.Builder, 0, len(s.names)+1)
	for _, name := range s.names {
		r, ok := byName[name]
		if !ok {
			r = result{name: name, err: fmt.Errorf("no answer: %w", ctx.Err()), duration: s.now().Sub(snap.Time)}
			byName[name] = r
		}
		success := 1.0
		if r.err != nil {
			success = 0
			s.logger.Error("collector failed", "collector", name, "duration_seconds", r.duration.Seconds(), "err", r.err)
			if r.samples != nil {
				r.samples.Release()
			}
		} else if r.samples != nil {
			taken = append(taken, r.samples)
		}
		self.Add(successDesc, success, []string{"exporter", "collector", name, "success"}, name)
		self.Add(durationDesc, r.duration.Seconds(), []string{"exporter", "collector", name, "duration_seconds"}, name)
	}
	// The collectors' samples in order, then the Set's own; the first
	// collector's are taken as they are when they are in one block (see
	// tree.Builder.Grow) with room for the rest.
	snap.Append(append(taken, &self)...)
	return snap
}

// collector returns the collector of name.
func (s *Set) collector(name string) Collector {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.collectors[name]
}

// Replace puts c in place of the collector of name, which must be one of
// the Set's; snapshots that already run go on with the old one. It is how
// the exporter reopens its collectors when the watched network namespace
// changes.
func (s *Set) Replace(name string, c Collector) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.collectors[name]; ok {
		s.collectors[name] = c
	}
}

// run updates one collector, turning a panic into an error.
func (s *Set) run(ctx context.Context, name string, c Collector) (r result) {
	r.name = name
	start := s.now()
	b := new(tree.Builder)
	defer func() {
		if p := recover(); p != nil {
			r.err = fmt.Errorf("%w: %v\n%s", errPanic, p, debug.Stack())
		}
		// A permission error names the capability that is missing.
		r.err = netns.CapabilityHint(r.err, "CAP_NET_ADMIN")
		r.duration = s.now().Sub(start)
		r.samples = b
		s.statusMu.Lock()
		st := s.status[name]
		st.succeeded = st.succeeded || r.err == nil
		st.err = r.err
		s.statusMu.Unlock()
	}()
	r.err = c.Update(ctx, b)
	return r
}

// failing is a collector that could not be set up.
type failing struct{ err error }

// Failing returns a collector whose every update fails with err. The
// exporter serves it in place of a collector that could not start (a kernel
// module missing, a permission denied), so that the failure shows as
// netfilter_exporter_collector_success 0 while the other collectors go on.
func Failing(err error) Collector {
	return failing{err: err}
}

// Update returns the set-up error.
func (f failing) Update(context.Context, *tree.Builder) error {
	return f.err
}
