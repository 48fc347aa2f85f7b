package collector

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// fakeListener delivers a fixed list of batches, then waits.
type fakeListener struct {
	batches [][]ctnl.Flow
	stats   ctnl.ListenerStats
	err     error
	done    chan struct{}
}

func (f *fakeListener) Run(ctx context.Context, fn func([]ctnl.Flow)) error {
	for _, b := range f.batches {
		fn(b)
	}
	close(f.done)
	<-ctx.Done()
	return nil
}

func (f *fakeListener) Stats() (ctnl.ListenerStats, error) { return f.stats, f.err }

// Drained says every event was delivered: the fake delivers its batches
// before anything else happens.
func (f *fakeListener) Drained() time.Time { return time.Now() }

// SetFilter accepts any filter: the fake has no kernel to run it.
func (f *fakeListener) SetFilter(*ctnl.EventFilter) error { return nil }

// runConntrack returns the collector of a pipeline configured by cfg that
// listens to l, once l has delivered its batches.
func runConntrack(t testing.TB, cfg flow.Config, l *fakeListener) *Conntrack {
	t.Helper()
	p, err := flow.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Open(0, func() (flow.Conns, error) { return flow.Conns{Listener: l}, nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = p.Run(ctx) }()
	<-l.done
	return NewConntrack(p)
}

func testFlow(src, dst string, proto uint8, dport uint16, op, ob, rp, rb uint64, secs int64) ctnl.Flow {
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

func TestConntrackGolden(t *testing.T) {
	keys, err := flow.ParseGroupBy("family,proto,dport")
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeListener{
		batches: [][]ctnl.Flow{
			{testFlow("192.0.2.1", "198.51.100.2", 6, 443, 10, 1000, 8, 20000, 2)},
			{testFlow("192.0.2.1", "198.51.100.2", 6, 443, 5, 500, 4, 4000, 30), testFlow("2001:db8::1", "2001:db8::2", 17, 53, 1, 60, 1, 120, 0)},
		},
		stats: ctnl.ListenerStats{Events: 3, Drops: 2, Lost: 2, Overruns: 1, ReadBuffer: 1 << 20, Method: ctnl.MethodIOURing},
		done:  make(chan struct{}),
	}
	c := runConntrack(t, flow.Config{GroupBy: keys, MaxSeries: 100}, l)

	p := exposition.NewGatherer(NewSet(map[string]Collector{"conntrack": c}, time.Second, discard))
	checkGolden(t, p, "testdata/conntrack.prom")
}

func TestConntrackWithoutDropCounterFails(t *testing.T) {
	keys, _ := flow.ParseGroupBy("proto")
	l := &fakeListener{err: errors.New("bad file descriptor"), done: make(chan struct{})}
	c := runConntrack(t, flow.Config{GroupBy: keys, MaxSeries: 10}, l)
	set := NewSet(map[string]Collector{"conntrack": c}, time.Second, discard)
	want := `
# HELP netfilter_exporter_collector_success Whether the collector's last update succeeded (1) or failed (0).
# TYPE netfilter_exporter_collector_success gauge
netfilter_exporter_collector_success{collector="conntrack"} 0
`
	if err := testutil.GatherAndCompare(exposition.NewGatherer(set), strings.NewReader(want), "netfilter_exporter_collector_success"); err != nil {
		t.Error(err)
	}
}

type fakeTable struct{ s ctnl.TableStats }

func (f fakeTable) TableStats(context.Context) (ctnl.TableStats, error) { return f.s, nil }

func TestConntrackStatsGolden(t *testing.T) {
	c := NewConntrackStats(fakeTable{ctnl.TableStats{Entries: 12, MaxEntries: 262144, CPUs: 2, Found: 3, Invalid: 4, Insert: 5, InsertFailed: 6, Drop: 7, EarlyDrop: 8, Error: 9, SearchRestart: 10, ClashResolve: 11, ChainTooLong: 1}})
	p := exposition.NewGatherer(NewSet(map[string]Collector{"conntrack_stats": c}, time.Second, discard))
	checkGolden(t, p, "testdata/conntrack_stats.prom")
}

// TestConntrackSeriesSamples checks the samples the collector makes of the
// flow series: names, labels, Graphite paths, help texts, the overflow
// series, and that no two samples share labels or a path.
func TestConntrackSeriesSamples(t *testing.T) {
	keys, _ := flow.ParseGroupBy("family,proto,dport")
	// Three series at most, the overflow series included.
	l := &fakeListener{batches: [][]ctnl.Flow{{
		testFlow("192.0.2.1", "198.51.100.2", 6, 443, 10, 1000, 8, 20000, 2),
		testFlow("192.0.2.1", "198.51.100.2", 17, 53, 1, 60, 1, 120, 0),
		testFlow("192.0.2.1", "198.51.100.2", 6, 22, 1, 1, 1, 1, 0), // past the limit
	}}, done: make(chan struct{})}
	c := runConntrack(t, flow.Config{GroupBy: keys, MaxSeries: 3}, l)
	var b tree.Builder
	if err := c.Update(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	labels, paths := map[string]bool{}, map[string]bool{}
	for s := range b.All() {
		if s.Desc.Help == "" || !strings.HasSuffix(s.Desc.Help, ".") {
			t.Errorf("%s: help %q is not a sentence", s.Desc.Name, s.Desc.Help)
		}
		if len(s.LabelValues) != len(s.Desc.Labels) {
			t.Errorf("%s: %d label values for labels %q", s.Desc.Name, len(s.LabelValues), s.Desc.Labels)
		}
		l := s.Desc.Name + "{" + strings.Join(s.LabelValues, ",") + "}"
		if labels[l] {
			t.Errorf("two samples %s", l)
		}
		labels[l] = true
		if gp := s.GraphitePath(); gp != nil {
			p := strings.Join(gp, ".")
			if paths[p] {
				t.Errorf("two samples at %s", p)
			}
			paths[p] = true
			got[p] = s.Value
		} else if s.Desc.Kind != tree.Histogram {
			t.Errorf("%s has no Graphite path", l)
		}
	}
	for p, want := range map[string]float64{
		"conntrack.ipv4.tcp.443.flows":       1,
		"conntrack.ipv4.tcp.443.orig.pkts":   10,
		"conntrack.ipv4.tcp.443.orig.bytes":  1000,
		"conntrack.ipv4.tcp.443.reply.pkts":  8,
		"conntrack.ipv4.tcp.443.reply.bytes": 20000,
		"conntrack.ipv4.udp.53.reply.bytes":  120,
		"conntrack.other.other.other.flows":  1,
		"exporter.conntrack.series":          3,
		"exporter.conntrack.series_limit":    3,
		"exporter.conntrack.overflow_events": 1,
		"exporter.conntrack.destroy_events":  0,
	} {
		if v, ok := got[p]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", p, v, ok, want)
		}
	}
	if _, ok := got["conntrack.ipv4.tcp.443.active"]; ok {
		t.Error("active flows reported without live accounting")
	}
}

// TestConntrackLiveSamples checks the names and Graphite paths of live
// accounting's own counts, the filtered dump entries beside their
// siblings.
func TestConntrackLiveSamples(t *testing.T) {
	st := flow.Stats{Live: true, Poll: flow.PollStats{Errors: 2, Lookups: 3, Dumped: true},
		Flows: flow.LiveStats{Dumps: 4, Entries: 5, Filtered: 6, ClosedOut: 7}}
	var b tree.Builder
	newLiveFamilies().add(&b, &st)
	got := map[string]string{}
	for s := range b.All() {
		got[s.Desc.Name] = strings.Join(s.GraphitePath(), ".") + " " + strconv.FormatFloat(s.Value, 'g', -1, 64)
	}
	for _, tt := range []struct{ name, want string }{
		{"netfilter_conntrack_dumps_total", "exporter.conntrack.dumps 4"},
		{"netfilter_conntrack_dump_errors_total", "exporter.conntrack.dump_errors 2"},
		{"netfilter_conntrack_dump_entries", "exporter.conntrack.dump_entries 5"},
		{"netfilter_conntrack_dump_entries_filtered_total", "exporter.conntrack.dump_entries_filtered 6"},
		{"netfilter_conntrack_flow_lookups_total", "exporter.conntrack.flow_lookups 3"},
		{"netfilter_conntrack_flows_closed_out_total", "exporter.conntrack.flows_closed_out 7"},
	} {
		if got[tt.name] != tt.want {
			t.Errorf("%s: path and value %q, want %q", tt.name, got[tt.name], tt.want)
		}
	}
}
