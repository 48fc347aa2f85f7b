package flow

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

func TestDumpFilterFor(t *testing.T) {
	f, err := NewFilter([]Rule{{Src: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Mark: []MarkMatch{{Value: 1, Mask: 3}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ctnl.DumpFilter{Family: 4, HasMark: true, Mark: 1, MarkMask: 3}
	if got := dumpFilterFor(f); got != want {
		t.Errorf("dumpFilterFor = %+v, want %+v", got, want)
	}
	if got := dumpFilterFor(nil); got != (ctnl.DumpFilter{}) {
		t.Errorf("dumpFilterFor(nil) = %+v, want no filter", got)
	}
}

// pipelineFlow returns a TCP flow to port dport with counters and a
// duration of secs seconds.
func pipelineFlow(src, dst string, proto uint8, dport uint16, op, ob, rp, rb uint64, secs int64) ctnl.Flow {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	fam := uint8(4)
	if s.Is6() {
		fam = 6
	}
	return ctnl.Flow{
		Family:      fam,
		Orig:        ctnl.Tuple{Src: s, Dst: d, Proto: proto, SPort: 40000, DPort: dport},
		Reply:       ctnl.Tuple{Src: d, Dst: s, Proto: proto, SPort: dport, DPort: 40000},
		OrigPackets: op, OrigBytes: ob, ReplyPackets: rp, ReplyBytes: rb,
		Start: 1_700_000_000e9, Stop: 1_700_000_000e9 + secs*1e9,
	}
}

// TestPipelineRunAndReopen runs a pipeline on a fake listener: its events
// are counted and ListenerUp reads true while it runs; Run before Open
// fails; a second Open (a new namespace) closes out the flows the dumps
// followed and keeps the sums.
func TestPipelineRunAndReopen(t *testing.T) {
	p, err := New(Config{GroupBy: []Key{KeyProto}, MaxSeries: 10, Live: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); !errors.Is(err, errNotOpen) {
		t.Errorf("Run before Open: %v, want errNotOpen", err)
	}
	l := &FakeListener{Batches: [][]ctnl.Flow{{pipelineFlow("192.0.2.1", "198.51.100.2", 17, 53, 1, 60, 1, 120, 0)}}, Done: make(chan struct{})}
	d := &FakeDumper{Table: map[uint32]ctnl.Flow{}, Hidden: map[uint32]bool{}}
	live := pipelineFlow("192.0.2.1", "198.51.100.2", 6, 443, 10, 1000, 0, 0, 0)
	live.ID, live.Start, live.Stop = 7, time.Now().Add(time.Hour).UnixNano(), 0
	d.Table[7] = live
	if err := p.Open(0, func() (Conns, error) { return Conns{Listener: l, Dumper: d}, nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- p.Run(ctx) }()
	<-l.Done
	if st := p.Stats(); !st.ListenerUp || !st.Live {
		t.Errorf("running: %+v, want the listener up and live accounting on", st)
	}
	// The poller's first dump, the baseline, starts at once.
	for p.Stats().Flows.Dumps == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	if st := p.Stats(); st.ListenerUp || st.Flows.Tracked != 1 {
		t.Errorf("stopped: %+v, want the listener down and 1 flow tracked", st)
	}
	l2 := &FakeListener{Done: make(chan struct{})}
	if err := p.Open(0, func() (Conns, error) { return Conns{Listener: l2, Dumper: d}, nil }); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Flows.Tracked != 0 || st.Flows.ClosedOut != 1 || st.Poll.Dumped {
		t.Errorf("reopened: %+v, want no flow tracked, 1 closed out and no dump yet", st)
	}
	var r Reading
	if err := p.Read(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	// The event's flow began before accounting: it counts as a flow, its
	// bytes not. The dumped one began after: all its bytes count.
	if tot := totals(r); tot.Flows != 2 || tot.OrigBytes != 1000 {
		t.Errorf("reopened: %+v, want 2 flows and the dumped flow's 1000 bytes", tot)
	}
}

// BenchmarkConntrackAdd measures the pipeline's part of an event: the delta,
// the series and the duration histogram, for batches of 256 flows over
// about 1,000 series with counters and timestamps.
func BenchmarkConntrackAdd(b *testing.B) {
	keys, err := ParseGroupBy(DefaultGroupBy)
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{GroupBy: keys, MaxSeries: 4096})
	if err != nil {
		b.Fatal(err)
	}
	fs := make([]ctnl.Flow, 256)
	for i := range fs {
		fs[i] = pipelineFlow("192.0.2.1", "198.51.100.2", 6, uint16(1000+i*4%1000), 10, 1000, 8, 20000, int64(i%300))
	}
	p.agg.countDestroyed(fs)
	b.ReportAllocs()
	for b.Loop() {
		p.agg.countDestroyed(fs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(fs)), "ns/flow")
}
