package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type collectorFunc func(ctx context.Context, b *tree.Builder) error

func (f collectorFunc) Update(ctx context.Context, b *tree.Builder) error { return f(ctx, b) }

var testDesc = tree.NewDesc("netfilter_test_value", "A test value.", tree.Gauge)

func TestSetIsolatesFailures(t *testing.T) {
	good := collectorFunc(func(_ context.Context, b *tree.Builder) error {
		b.Add(testDesc, 42, []string{"test", "value"})
		return nil
	})
	failing := collectorFunc(func(_ context.Context, b *tree.Builder) error {
		b.Add(testDesc, 1, nil) // half-done work must not leak out
		return errors.New("operation not permitted")
	})
	panicking := collectorFunc(func(context.Context, *tree.Builder) error {
		panic("boom")
	})
	hanging := collectorFunc(func(ctx context.Context, _ *tree.Builder) error {
		<-ctx.Done()
		time.Sleep(time.Second) // ignores its deadline for a while
		return ctx.Err()
	})
	set := NewSet(map[string]Collector{"good": good, "failing": failing, "panicking": panicking, "hanging": hanging}, 200*time.Millisecond, discard)

	want := `
# HELP netfilter_exporter_collector_success Whether the collector's last update succeeded (1) or failed (0).
# TYPE netfilter_exporter_collector_success gauge
netfilter_exporter_collector_success{collector="failing"} 0
netfilter_exporter_collector_success{collector="good"} 1
netfilter_exporter_collector_success{collector="hanging"} 0
netfilter_exporter_collector_success{collector="panicking"} 0
# HELP netfilter_test_value A test value.
# TYPE netfilter_test_value gauge
netfilter_test_value 42
`
	start := time.Now()
	if err := testutil.GatherAndCompare(exposition.NewGatherer(set), strings.NewReader(want),
		"netfilter_exporter_collector_success", "netfilter_test_value"); err != nil {
		t.Error(err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("a scrape waited %v for a collector that ignores its deadline; want about the 200ms timeout", d)
	}
}

func TestSetSnapshotPaths(t *testing.T) {
	set := NewSet(map[string]Collector{"good": collectorFunc(func(_ context.Context, b *tree.Builder) error {
		b.Add(testDesc, 1, []string{"test", "value"})
		return nil
	})}, time.Second, discard)
	snap := set.Snapshot(context.Background())
	var paths []string
	for _, s := range snap.Samples {
		paths = append(paths, strings.Join(s.GraphitePath(), "."))
	}
	want := "test.value exporter.collector.good.success exporter.collector.good.duration_seconds"
	if got := strings.Join(paths, " "); got != want {
		t.Errorf("paths = %q, want %q", got, want)
	}
}

func TestSetNotReadyUntilEveryCollectorSucceeded(t *testing.T) {
	release := make(chan struct{})
	slow := collectorFunc(func(ctx context.Context, _ *tree.Builder) error {
		<-release // answers only when the test says so, whatever its deadline
		return nil
	})
	var fail atomic.Bool
	fail.Store(true)
	flaky := collectorFunc(func(context.Context, *tree.Builder) error {
		if fail.Load() {
			return fmt.Errorf("dumping: %w", syscall.EPERM)
		}
		return nil
	})
	panicking := collectorFunc(func(context.Context, *tree.Builder) error { panic("boom") })
	set := NewSet(map[string]Collector{"slow": slow, "flaky": flaky, "panicking": panicking}, 50*time.Millisecond, discard)

	want := "flaky: no answer yet|panicking: no answer yet|slow: no answer yet"
	if got := strings.Join(set.NotReady(), "|"); got != want {
		t.Errorf("before any snapshot NotReady() = %q, want %q", got, want)
	}
	set.Snapshot(context.Background()) // gives up on slow after 50ms
	want = "flaky: dumping: operation not permitted (it needs CAP_NET_ADMIN)|panicking: collector panicked: boom|slow: no answer yet"
	if got := strings.Join(set.NotReady(), "|"); got != want {
		t.Errorf("after a snapshot where flaky failed, NotReady() = %q, want %q: a failure is not ready, and says why in one line", got, want)
	}
	fail.Store(false)
	close(release)
	set.Snapshot(context.Background())
	if got := strings.Join(set.NotReady(), "|"); got != "panicking: collector panicked: boom" {
		t.Errorf("after flaky and slow succeeded, NotReady() = %q, want only panicking", got)
	}
	fail.Store(true)
	set.Snapshot(context.Background())
	if got := strings.Join(set.NotReady(), "|"); got != "panicking: collector panicked: boom" {
		t.Errorf("after flaky failed again, NotReady() = %q: a collector that has succeeded once stays ready", got)
	}
}

// TestSetTakesAGrownBuilderAsItIs checks the snapshot of a collector that
// sizes its Builder (taken without a copy) followed by another collector
// and the Set's own samples, in order.
func TestSetTakesAGrownBuilderAsItIs(t *testing.T) {
	const n = 10000
	big := collectorFunc(func(_ context.Context, b *tree.Builder) error {
		b.Grow(n)
		for i := range n {
			b.Add(testDesc, float64(i), nil)
		}
		return nil
	})
	small := collectorFunc(func(_ context.Context, b *tree.Builder) error {
		b.Add(testDesc, -1, nil)
		return nil
	})
	snap := NewSet(map[string]Collector{"a": big, "b": small}, time.Second, discard).Snapshot(context.Background())
	if len(snap.Samples) != n+1+4 {
		t.Fatalf("%d samples, want %d", len(snap.Samples), n+5)
	}
	for i := range n {
		if snap.Samples[i].Value != float64(i) {
			t.Fatalf("sample %d is %v", i, snap.Samples[i].Value)
		}
	}
	if snap.Samples[n].Value != -1 || snap.Samples[n+1].Desc != successDesc {
		t.Errorf("after the grown collector: %v %v", snap.Samples[n].Value, snap.Samples[n+1].Desc.Name)
	}
}
