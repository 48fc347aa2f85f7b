package collector

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/prometheus"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// fakeDumper is a conntrack table: dumps list it (less the hidden entries,
// as a dump racing with the table may miss some), lookups find it all.
type fakeDumper struct {
	table   map[uint32]ctnl.Flow // by id
	hidden  map[uint32]bool
	lookups int
}

func (f *fakeDumper) Dump(_ context.Context, _ ctnl.DumpFilter, fn func([]ctnl.Flow) error) (ctnl.DumpStats, error) {
	var fs []ctnl.Flow
	for id, fl := range f.table {
		if !f.hidden[id] {
			fs = append(fs, fl)
		}
	}
	return ctnl.DumpStats{Entries: len(fs), CPU: time.Millisecond, Duration: 2 * time.Millisecond}, fn(fs)
}

func (f *fakeDumper) Lookup(_ context.Context, q *ctnl.Flow) (ctnl.Flow, bool, error) {
	f.lookups++
	for _, fl := range f.table {
		if fl.Orig.SPort == q.Orig.SPort {
			return fl, true, nil
		}
	}
	return ctnl.Flow{}, false, nil
}

// liveStart is when the flows of the live tests began: after any
// aggregator of the tests.
var liveStart = time.Now().Add(time.Hour).UnixNano()

func liveTestFlow(id uint32, sport uint16, orig uint64) ctnl.Flow {
	f := testFlow("192.0.2.1", "198.51.100.2", 6, 443, orig/100, orig, 0, 0, 0)
	f.Orig.SPort, f.Reply.DPort = sport, sport
	f.ID, f.Stop, f.Start = id, 0, liveStart
	f.TCPState = 3
	return f
}

func TestConntrackLiveRounds(t *testing.T) {
	keys, _ := flow.ParseGroupBy("proto")
	agg, err := flow.NewAggregator(flow.Config{GroupBy: keys, MaxSeries: 10, Live: true})
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeListener{done: make(chan struct{})}
	c := NewConntrack(l, agg)
	d := &fakeDumper{table: map[uint32]ctnl.Flow{1: liveTestFlow(1, 1000, 1000)}, hidden: map[uint32]bool{}}
	c.Live(d, LiveConfig{Interval: time.Hour})
	ctx := context.Background()
	round := func() {
		t.Helper()
		st, err := c.poll.round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.poll.next(st, nil)
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
	d.table[1] = liveTestFlow(1, 1000, 1500)
	d.hidden[1] = true
	round()
	if got := bytes(); got != 1500 || d.lookups != 1 {
		t.Fatalf("after a dump that missed the flow: %v bytes and %d lookups, want 1500 and 1", got, d.lookups)
	}
	// The flow leaves the table without DESTROY: closed out once the
	// listener has drained (the fake always has).
	delete(d.table, 1)
	round()

	p := prometheus.NewGatherer(NewSet(map[string]Collector{"conntrack": c}, time.Second, discard))
	checkGolden(t, p, "testdata/conntrack_live.prom")
	// The lookups' processor time is measured for real: at least the
	// fake dumps' 1 ms each.
	if cpu := c.poll.stats().cpu; cpu < 3*time.Millisecond {
		t.Errorf("dump CPU %v, want at least 3ms", cpu)
	}
}

func TestDumpFilterFor(t *testing.T) {
	f, err := flow.NewFilter([]flow.Rule{{Src: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Mark: []flow.MarkMatch{{Value: 1, Mask: 3}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ctnl.DumpFilter{Family: 4, HasMark: true, Mark: 1, MarkMask: 3}
	if got := DumpFilterFor(f); got != want {
		t.Errorf("DumpFilterFor = %+v, want %+v", got, want)
	}
	if got := DumpFilterFor(nil); got != (ctnl.DumpFilter{}) {
		t.Errorf("DumpFilterFor(nil) = %+v, want no filter", got)
	}
}
