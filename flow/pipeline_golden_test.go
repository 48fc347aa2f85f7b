package flow_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// liveStart is when the flows of the live tests began: after any
// pipeline of the tests.
var liveStart = time.Now().Add(time.Hour).UnixNano()

func liveTestFlow(id uint32, sport uint16, orig uint64) ctnl.Flow {
	s, d := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	return ctnl.Flow{
		Family:      4,
		Orig:        ctnl.Tuple{Src: s, Dst: d, Proto: 6, SPort: sport, DPort: 443},
		Reply:       ctnl.Tuple{Src: d, Dst: s, Proto: 6, SPort: 443, DPort: sport},
		OrigPackets: orig / 100, OrigBytes: orig,
		ID: id, Start: liveStart, TCPState: 3,
	}
}

// TestConntrackLiveRounds steps live accounting through three dumps and
// checks what the conntrack collector serves of it against its golden file.
func TestConntrackLiveRounds(t *testing.T) {
	keys, _ := flow.ParseGroupBy("proto")
	p, err := flow.New(flow.Config{GroupBy: keys, MaxSeries: 10, Live: true, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l := &flow.FakeListener{Done: make(chan struct{})}
	d := &flow.FakeDumper{Table: map[uint32]ctnl.Flow{1: liveTestFlow(1, 1000, 1000)}, Hidden: map[uint32]bool{}}
	if err := p.Open(0, func() (flow.Conns, error) { return flow.Conns{Listener: l, Dumper: d}, nil }); err != nil {
		t.Fatal(err)
	}
	c := collector.NewConntrack(p)
	ctx := context.Background()
	round := func() {
		t.Helper()
		if err := flow.Round(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	bytes := func() float64 {
		t.Helper()
		var b tree.Builder
		if err := c.Update(ctx, &b); err != nil {
			t.Fatal(err)
		}
		var sum float64
		for s := range b.All() {
			if s.Desc.Name == "netfilter_conntrack_flow_bytes_total" {
				sum += s.Value
			}
		}
		return sum
	}

	round() // a new flow: counted from zero
	if got := bytes(); got != 1000 {
		t.Fatalf("after the first dump: %v bytes, want 1000", got)
	}
	// The dump misses the flow; the lookup finds it, grown.
	d.Table[1] = liveTestFlow(1, 1000, 1500)
	d.Hidden[1] = true
	round()
	if got := bytes(); got != 1500 || d.Lookups != 1 {
		t.Fatalf("after a dump that missed the flow: %v bytes and %d lookups, want 1500 and 1", got, d.Lookups)
	}
	// The flow leaves the table without DESTROY: closed out once the
	// listener has drained (the fake always has).
	delete(d.Table, 1)
	round()

	g := exposition.NewGatherer(collector.NewSet(map[string]collector.Collector{"conntrack": c}, time.Second, slog.New(slog.DiscardHandler)))
	checkGolden(t, g, "../collector/testdata/conntrack_live.prom")
	// The lookups' processor time is measured for real: at least the
	// fake dumps' 1 ms each.
	if cpu := p.Stats().Poll.CPU; cpu < 3*time.Millisecond {
		t.Errorf("dump CPU %v, want at least 3ms", cpu)
	}
}

// timeFamilies measure wall or processor time as the test runs: their
// samples are compared by labels, with the value set to 0, as the
// collector's golden tests do.
var timeFamilies = map[string]bool{
	"netfilter_exporter_collector_duration_seconds": true,
	"netfilter_conntrack_dump_duration_seconds":     true,
	"netfilter_conntrack_dump_cpu_seconds_total":    true,
}

// checkGolden compares everything g gathers with a golden file of the
// collector package (go test ./collector -update writes them), and lints it
// with promlint.
func checkGolden(t *testing.T, g prom.Gatherer, golden string) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	zero := 0.0
	for _, mf := range mfs {
		if !timeFamilies[mf.GetName()] {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				m.Counter.Value = &zero
			case m.Gauge != nil:
				m.Gauge.Value = &zero
			}
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	gathered := prom.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
	if err := testutil.GatherAndCompare(gathered, bytes.NewReader(want)); err != nil {
		t.Errorf("%s: %v", golden, err)
	}
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
}
