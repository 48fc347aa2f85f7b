package graphite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// baseTime is the timestamp of snapshot 0; snapshot n is n seconds later.
const baseTime = 1_700_000_000

// fakeSource returns snapshot 1, 2, ... at each call: Time is baseTime+n
// seconds, and it holds the counter nfacct.web.pkts = 10n, plus samples that
// must never reach Graphite. After limit snapshots (if limit > 0) it returns
// nil.
type fakeSource struct {
	limit int

	mu sync.Mutex
	n  int
}

func (s *fakeSource) Snapshot(context.Context) *tree.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit > 0 && s.n >= s.limit {
		return nil
	}
	s.n++
	return &tree.Snapshot{
		Time: time.Unix(int64(baseTime+s.n), 0),
		Samples: []tree.Sample{
			{Desc: counterDesc, LabelValues: []string{"web"}, Path: []string{"nfacct", "web", "pkts"}, Value: float64(10 * s.n)},
			{Desc: counterDesc, LabelValues: []string{"hidden"}, Value: 1},
			{Desc: histDesc, Histogram: &tree.HistogramValue{Count: 1, Sum: 1}},
		},
	}
}

func (s *fakeSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// cumulativeLine is the line of snapshot n in cumulative mode.
func cumulativeLine(n int) string {
	return fmt.Sprintf("netfilter.nfacct.web.pkts %d %d", 10*n, baseTime+n)
}

// fakeCarbon is a plaintext listener that records every line it reads.
type fakeCarbon struct {
	ln net.Listener
	// closeAfter, when > 0, makes the carbon shut itself down (listener and
	// connections) as soon as it has read that many lines in total and has
	// no partial write left in its buffer, so that no line is lost in its
	// socket buffer.
	closeAfter int

	mu     sync.Mutex
	lines  []string
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func startCarbon(t *testing.T, addr string, closeAfter int) *fakeCarbon {
	t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The port of a closed carbon can be briefly unavailable.
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	c := &fakeCarbon{ln: ln, closeAfter: closeAfter}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.Close)
	return c
}

func (c *fakeCarbon) addr() string { return c.ln.Addr().String() }

func (c *fakeCarbon) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = conn.Close()
			return
		}
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
		c.wg.Add(1)
		go c.read(conn)
	}
}

func (c *fakeCarbon) read(conn net.Conn) {
	defer c.wg.Done()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		c.mu.Lock()
		c.lines = append(c.lines, strings.TrimSuffix(line, "\n"))
		shut := c.closeAfter > 0 && len(c.lines) >= c.closeAfter && r.Buffered() == 0
		c.mu.Unlock()
		if shut {
			c.shutdown()
			return
		}
	}
}

// shutdown closes the listener and every connection without waiting.
func (c *fakeCarbon) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	_ = c.ln.Close()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

// Close shuts the carbon down and waits for its goroutines.
func (c *fakeCarbon) Close() {
	c.shutdown()
	c.wg.Wait()
}

func (c *fakeCarbon) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *fakeCarbon) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logRecorder is a slog.Handler that keeps the level and message of every
// record.
type logRecorder struct {
	mu      sync.Mutex
	records []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Level.String()+" "+r.Message)
	return nil
}

func (l *logRecorder) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// runWriter starts w.Run and returns a function that stops it and waits for
// Run to return.
func runWriter(t testing.TB, w *Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(w.cfg.Timeout + 10*time.Second):
				t.Errorf("Run did not return within its timeout")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testConfig(addr string) Config {
	return Config{
		Address:       addr,
		Prefix:        "netfilter",
		Interval:      50 * time.Millisecond,
		Timeout:       time.Second,
		BacklogPoints: 10_000,
	}
}

func TestWriterSendsEveryInterval(t *testing.T) {
	tests := []struct {
		mode Mode
		// line is the line expected for the i-th line received (from 0)
		// of n lines, the last one from the final snapshot.
		line func(i, n int) string
	}{
		{Cumulative, func(i, _ int) string { return cumulativeLine(i + 1) }},
		// Delta: snapshot 1 sets the baseline, then every snapshot adds 10.
		// The final one replaces the last point with 10 more.
		{Delta, func(i, n int) string {
			if i == n-1 {
				return fmt.Sprintf("netfilter.nfacct.web.pkts 20 %d", baseTime+i+1)
			}
			return fmt.Sprintf("netfilter.nfacct.web.pkts 10 %d", baseTime+i+2)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			carbon := startCarbon(t, "127.0.0.1:0", 0)
			cfg := testConfig(carbon.addr())
			cfg.Mode = tt.mode
			src := &fakeSource{}
			w, err := New(cfg, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			stop := runWriter(t, w)
			const want = 5
			waitFor(t, 30*time.Second, "5 lines", func() bool { return len(carbon.received()) >= want })
			if elapsed := time.Since(start); elapsed < (want-1)*cfg.Interval-cfg.Interval/2 && tt.mode == Cumulative {
				t.Errorf("5 lines after %v; snapshots are taken more often than every %v", elapsed, cfg.Interval)
			}
			stop()
			// Run returns once carbon's kernel has acknowledged every line;
			// they reach the listener right after.
			waitFor(t, 30*time.Second, "every line acknowledged", func() bool { return uint64(len(carbon.received())) == w.Stats().Sent })
			got := carbon.received()
			for i, l := range got {
				if l != tt.line(i, len(got)) {
					t.Fatalf("line %d = %q, want %q (all: %q)", i, l, tt.line(i, len(got)), got)
				}
			}
			st := w.Stats()
			if st.Sent != uint64(len(got)) || st.Dropped != 0 || st.BacklogPoints != 0 || st.Connected {
				t.Errorf("stats = %+v, want %d sent, nothing queued, disconnected", st, len(got))
			}
		})
	}
}

func TestWriterReplaysOutage(t *testing.T) {
	const beforeOutage = 3
	carbon1 := startCarbon(t, "127.0.0.1:0", beforeOutage)
	addr := carbon1.addr()
	src := &fakeSource{}
	logs := &logRecorder{}
	reg := prometheus.NewRegistry()
	cfg := testConfig(addr)
	cfg.Registerer = reg
	w, err := New(cfg, src, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	stop := runWriter(t, w)

	waitFor(t, 30*time.Second, "first carbon to close", carbon1.isClosed)
	carbon1.Close()
	// Stay away for several intervals.
	outageStart := src.count()
	waitFor(t, 30*time.Second, "snapshots during the outage", func() bool { return src.count() >= outageStart+6 })
	waitFor(t, 30*time.Second, "disconnection", func() bool { return !w.Stats().Connected })

	carbon2 := startCarbon(t, addr, 0)
	restart := src.count()
	waitFor(t, 10*time.Second, "replayed and new lines", func() bool {
		return containsLine(carbon2.received(), cumulativeLine(restart+2))
	})
	stop()
	t.Logf("log: %q", logs.records)
	last := src.count()
	waitFor(t, 30*time.Second, "the final snapshot", func() bool {
		return containsLine(carbon2.received(), cumulativeLine(last))
	})

	all := append(carbon1.received(), carbon2.received()...)
	// Every snapshot's line arrived, in order; a line may repeat only if it
	// was in flight when the first carbon went away.
	next := 1
	for _, l := range all {
		switch {
		case l == cumulativeLine(next):
			next++
		case next > 1 && l == cumulativeLine(next-1):
			// duplicate of the batch in flight
		default:
			t.Fatalf("unexpected line %q while expecting %q; all lines: %q", l, cumulativeLine(next), all)
		}
	}
	if next-1 != last {
		t.Fatalf("received snapshots 1..%d, want 1..%d", next-1, last)
	}
	if got := carbon2.received(); len(got) == 0 || got[0] != cumulativeLine(beforeOutage+1) {
		t.Errorf("first line after the outage = %q, want the first one generated during it, %q", got[:min(1, len(got))], cumulativeLine(beforeOutage+1))
	}
	st := w.Stats()
	if st.Sent < uint64(last) || st.Dropped != 0 || st.BacklogPoints != 0 {
		t.Errorf("stats = %+v, want at least %d sent, none dropped or queued", st, last)
	}
	if st.WriteErrors+st.ConnectErrors == 0 {
		t.Errorf("stats = %+v, want the outage counted as errors", st)
	}
	if n := logs.count("WARN"); n != 1 {
		t.Errorf("%d warnings logged for one outage, want 1: %q", n, logs.records)
	}
	if n := logs.count("INFO reconnected"); n != 1 {
		t.Errorf("%d reconnections logged, want 1: %q", n, logs.records)
	}
	expected := fmt.Sprintf(`
# HELP netfilter_exporter_graphite_points_dropped_total Points dropped because the Graphite backlog was full.
# TYPE netfilter_exporter_graphite_points_dropped_total counter
netfilter_exporter_graphite_points_dropped_total 0
# HELP netfilter_exporter_graphite_backlog_limit_points Most points the Graphite backlog keeps; 0 means no limit.
# TYPE netfilter_exporter_graphite_backlog_limit_points gauge
netfilter_exporter_graphite_backlog_limit_points %d
# HELP netfilter_exporter_graphite_connected Whether a connection to carbon is open (1) or not (0).
# TYPE netfilter_exporter_graphite_connected gauge
netfilter_exporter_graphite_connected 0
`, cfg.BacklogPoints)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected),
		metricPrefix+"points_dropped_total", metricPrefix+"backlog_limit_points", metricPrefix+"connected"); err != nil {
		t.Error(err)
	}
	if sent, _ := gatherValue(t, reg, metricPrefix+"points_sent_total"); sent < float64(last) {
		t.Errorf("points_sent_total = %v, want at least %d", sent, last)
	}
	if ts, _ := gatherValue(t, reg, metricPrefix+"last_send_timestamp_seconds"); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last_send_timestamp_seconds = %v, want a recent time", ts)
	}
}

func containsLine(lines []string, l string) bool {
	for _, x := range lines {
		if x == l {
			return true
		}
	}
	return false
}

// gatherValue returns the value of the single, unlabelled metric name in reg.
func gatherValue(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	t.Errorf("metric %s not found", name)
	return 0, false
}

// freeAddr returns a loopback address where nothing listens.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestWriterBacklogOverflow(t *testing.T) {
	const generated, limit = 12, 5
	addr := freeAddr(t)
	src := &fakeSource{limit: generated}
	reg := prometheus.NewRegistry()
	cfg := testConfig(addr)
	cfg.Interval = 20 * time.Millisecond
	cfg.BacklogPoints = limit
	cfg.Registerer = reg
	w, err := New(cfg, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWriter(t, w)

	waitFor(t, 30*time.Second, "all snapshots", func() bool { return src.count() == generated })
	waitFor(t, 30*time.Second, "drops", func() bool { return w.Stats().Dropped == generated-limit })
	st := w.Stats()
	if st.BacklogPoints != limit || st.Sent != 0 || st.Connected || st.ConnectErrors == 0 {
		t.Fatalf("stats during the outage = %+v, want %d queued, none sent, connect errors", st, limit)
	}
	var want []string
	wantBytes := 0
	for n := generated - limit + 1; n <= generated; n++ {
		want = append(want, cumulativeLine(n))
		wantBytes += len(cumulativeLine(n)) + 1
	}
	expected := fmt.Sprintf(`
# HELP netfilter_exporter_graphite_points_dropped_total Points dropped because the Graphite backlog was full.
# TYPE netfilter_exporter_graphite_points_dropped_total counter
netfilter_exporter_graphite_points_dropped_total %d
# HELP netfilter_exporter_graphite_backlog_points Points carbon's kernel has not acknowledged yet, resends aside, including those being written.
# TYPE netfilter_exporter_graphite_backlog_points gauge
netfilter_exporter_graphite_backlog_points %d
# HELP netfilter_exporter_graphite_backlog_bytes Bytes of the points carbon's kernel has not acknowledged yet, resends aside.
# TYPE netfilter_exporter_graphite_backlog_bytes gauge
netfilter_exporter_graphite_backlog_bytes %d
`, generated-limit, limit, wantBytes)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected),
		metricPrefix+"points_dropped_total", metricPrefix+"backlog_points", metricPrefix+"backlog_bytes"); err != nil {
		t.Error(err)
	}

	carbon := startCarbon(t, addr, 0)
	waitFor(t, 10*time.Second, "the backlog", func() bool { return len(carbon.received()) >= limit })
	stop()
	got := carbon.received()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("received %q, want the newest %d lines %q", got, limit, want)
	}
	if st := w.Stats(); st.Sent != limit || st.Dropped != generated-limit || st.BacklogPoints != 0 {
		t.Errorf("final stats = %+v", st)
	}
}

func TestWriterStopsWithinTimeout(t *testing.T) {
	cfg := testConfig(freeAddr(t))
	cfg.Timeout = 300 * time.Millisecond
	w, err := New(cfg, &fakeSource{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	waitFor(t, 30*time.Second, "a connect error", func() bool { return w.Stats().ConnectErrors > 0 })
	if err := w.Run(ctx); !errors.Is(err, errRunning) {
		t.Errorf("second Run = %v, want %v", err, errRunning)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if d := time.Since(start); d > cfg.Timeout+500*time.Millisecond {
		t.Errorf("Run returned %v after cancel, want about Timeout %v at most", d, cfg.Timeout)
	}
	if st := w.Stats(); st.BacklogPoints == 0 || st.Sent != 0 {
		t.Errorf("stats = %+v, want unsent points left", st)
	}
}

// TestWriterSendsFinalSnapshotOnStop checks that stopping the Writer takes
// one last snapshot and delivers it, so that a restart loses nothing.
func TestWriterSendsFinalSnapshotOnStop(t *testing.T) {
	carbon := startCarbon(t, "127.0.0.1:0", 0)
	cfg := testConfig(carbon.addr())
	cfg.Interval = time.Hour // only the first, immediate snapshot
	src := &fakeSource{}
	w, err := New(cfg, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	waitFor(t, 30*time.Second, "the first snapshot", func() bool { return len(carbon.received()) == 1 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Run returns once carbon's kernel has acknowledged the final line; it
	// reaches the listener right after.
	waitFor(t, 30*time.Second, "the final snapshot", func() bool { return len(carbon.received()) == 2 })
	want := []string{cumulativeLine(1), cumulativeLine(2)}
	if got := carbon.received(); !slices.Equal(got, want) {
		t.Errorf("lines = %q, want %q", got, want)
	}
	if st := w.Stats(); st.Sent != 2 || st.BacklogPoints != 0 {
		t.Errorf("stats = %+v, want 2 sent and nothing left", st)
	}
}

func TestProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := probeConn(raw); err != nil {
		t.Fatalf("probe of a live connection = %v", err)
	}
	if _, err := peer.Write([]byte("unexpected\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := probeConn(raw); err != nil {
		t.Fatalf("probe of a live connection carbon wrote to = %v", err)
	}
	_ = peer.Close()
	waitFor(t, 30*time.Second, "the probe to see the close", func() bool {
		return probeConn(raw) != nil
	})
}
