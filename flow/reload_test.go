package flow

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// reloadTraffic is what flows move before and again after a reload: one
// TCP delta per source and destination port, of the given bytes.
var reloadTraffic = []struct {
	src   string
	dport uint16
	bytes uint64
}{
	{"10.0.0.1", 80, 100},
	{"192.168.0.1", 80, 200},
	{"10.0.0.1", 443, 300},
	{"10.0.0.1", 8050, 400},
	{"10.0.0.1", 22, 500},
	{"172.16.0.1", 80, 600},
}

// reloadConfig returns the networks, ports and filter of one configuration.
func reloadConfig(t *testing.T, nets map[string][]netip.Prefix, ports []PortRange, deny []Rule) Update {
	t.Helper()
	var u Update
	var err error
	if nets != nil {
		if u.Networks, err = NewNetworks(nets); err != nil {
			t.Fatal(err)
		}
	}
	if ports != nil {
		if u.Ports, err = NewPorts(ports); err != nil {
			t.Fatal(err)
		}
	}
	if deny != nil {
		if u.Filter, err = NewFilter(nil, deny); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// bytesBySeries returns the original bytes of every series of r, by its
// key values joined by commas.
func bytesBySeries(r Reading) map[string]uint64 {
	out := make(map[string]uint64)
	for _, s := range r.Series {
		out[strings.Join(s.Values, ",")] = s.OrigBytes
	}
	return out
}

// TestReconfigure counts the same traffic before and after a reload of
// networks, ports and filters: the series whose keys read the same continue
// their sums, the others are removed and their flows start new series.
func TestReconfigure(t *testing.T) {
	lanDMZ := map[string][]netip.Prefix{"lan": prefixes("10.0.0.0/8"), "dmz": prefixes("192.168.0.0/16")}
	ports := []PortRange{{22, 22}, {80, 80}, {8000, 8100}}
	// Before the reload, the traffic makes these series.
	before := map[string]uint64{"other,80": 600, "dmz,80": 200, "lan,22": 500, "lan,80": 100, "lan,8000-8100": 400, "lan,other": 300}
	tests := []struct {
		name          string
		nets          map[string][]netip.Prefix
		ports         []PortRange
		deny          []Rule
		want          map[string]uint64
		kept, removed int
	}{
		{
			name: "unchanged", nets: lanDMZ, ports: ports, kept: 6,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 400, "lan,22": 1000, "lan,80": 200, "lan,8000-8100": 800, "lan,other": 600},
		},
		{
			name: "network renamed", nets: map[string][]netip.Prefix{"office": prefixes("10.0.0.0/8"), "dmz": prefixes("192.168.0.0/16")}, ports: ports, kept: 2, removed: 4,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 400, "office,22": 500, "office,80": 100, "office,8000-8100": 400, "office,other": 300},
		},
		{
			name: "network added before the others", nets: map[string][]netip.Prefix{"aaa": prefixes("172.16.0.0/12"), "lan": prefixes("10.0.0.0/8"), "dmz": prefixes("192.168.0.0/16")}, ports: ports, kept: 6,
			want: map[string]uint64{"other,80": 600, "aaa,80": 600, "dmz,80": 400, "lan,22": 1000, "lan,80": 200, "lan,8000-8100": 800, "lan,other": 600},
		},
		{
			name: "network removed", nets: map[string][]netip.Prefix{"lan": prefixes("10.0.0.0/8")}, ports: ports, kept: 5, removed: 1,
			want: map[string]uint64{"other,80": 1400, "lan,22": 1000, "lan,80": 200, "lan,8000-8100": 800, "lan,other": 600},
		},
		{
			name: "port added", nets: lanDMZ, ports: []PortRange{{22, 22}, {80, 80}, {443, 443}, {8000, 8100}}, kept: 6,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 400, "lan,22": 1000, "lan,80": 200, "lan,443": 300, "lan,8000-8100": 800, "lan,other": 300},
		},
		{
			name: "port removed", nets: lanDMZ, ports: []PortRange{{80, 80}, {8000, 8100}}, kept: 5, removed: 1,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 400, "lan,80": 200, "lan,8000-8100": 800, "lan,other": 1100},
		},
		{
			name: "range moved first and widened", nets: lanDMZ, ports: []PortRange{{8000, 8200}, {22, 22}, {80, 80}}, kept: 5, removed: 1,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 400, "lan,22": 1000, "lan,80": 200, "lan,8000-8200": 400, "lan,other": 600},
		},
		{
			name: "range moved first", nets: lanDMZ, ports: []PortRange{{8000, 8100}, {22, 22}, {80, 80}}, kept: 6,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 400, "lan,22": 1000, "lan,80": 200, "lan,8000-8100": 800, "lan,other": 600},
		},
		{
			name: "port list removed", nets: lanDMZ, kept: 5, removed: 1,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 400, "lan,22": 1000, "lan,80": 200, "lan,443": 300, "lan,8050": 400, "lan,other": 300},
		},
		{
			name: "filter added", nets: lanDMZ, ports: ports, deny: []Rule{{Src: prefixes("192.168.0.0/16")}}, kept: 6,
			want: map[string]uint64{"other,80": 1200, "dmz,80": 200, "lan,22": 1000, "lan,80": 200, "lan,8000-8100": 800, "lan,other": 600},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := reloadConfig(t, lanDMZ, ports, nil)
			a := mustAggregator(t, Config{GroupBy: []Key{KeySrcNet, KeyDPort}, Networks: u.Networks, Ports: u.Ports})
			send := func() {
				for _, f := range reloadTraffic {
					d := tcp4(f.src, "198.51.100.1", 40000, f.dport)
					d.OrigBytes = f.bytes
					a.Add(&d)
				}
			}
			send()
			if diff := cmp.Diff(before, bytesBySeries(read(t, a))); diff != "" {
				t.Fatalf("before the reload (-want +got):\n%s", diff)
			}
			got := a.reconfigure(reloadConfig(t, tt.nets, tt.ports, tt.deny))
			if want := (Reconfigured{Kept: tt.kept, Removed: tt.removed}); got != want {
				t.Errorf("reconfigure = %+v, want %+v", got, want)
			}
			send()
			r := read(t, a)
			if diff := cmp.Diff(tt.want, bytesBySeries(r)); diff != "" {
				t.Errorf("after the reload (-want +got):\n%s", diff)
			}
			if r.Stats.Series != len(tt.want) {
				t.Errorf("Stats.Series = %d, want %d", r.Stats.Series, len(tt.want))
			}
		})
	}
}

// TestReconfigureOrder checks that the series of a reading stay in key
// order once a reload has moved the ids of networks or port ranges: as a new
// aggregator with the reloaded configuration orders them.
func TestReconfigureOrder(t *testing.T) {
	tests := []struct {
		name     string
		from, to Update
	}{
		{
			name: "networks renamed around",
			from: reloadConfig(t, map[string][]netip.Prefix{"b": prefixes("10.0.0.0/8"), "c": prefixes("192.168.0.0/16")}, nil, nil),
			to:   reloadConfig(t, map[string][]netip.Prefix{"a": prefixes("172.16.0.0/12"), "c": prefixes("10.0.0.0/8"), "d": prefixes("192.168.0.0/16")}, nil, nil),
		},
		{
			name: "ranges listed in another order",
			from: reloadConfig(t, nil, []PortRange{{1000, 1999}, {2000, 2999}, {3000, 3999}}, nil),
			to:   reloadConfig(t, nil, []PortRange{{3000, 3999}, {1000, 1999}, {2000, 2999}}, nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := []Key{KeySrcNet, KeyDPort}
			a := mustAggregator(t, Config{GroupBy: keys, Networks: tt.from.Networks, Ports: tt.from.Ports})
			fresh := mustAggregator(t, Config{GroupBy: keys, Networks: tt.to.Networks, Ports: tt.to.Ports})
			send := func(as ...*aggregator) {
				// 203.0.113.1 is in no network: the series whose
				// networks read other are in both.
				for _, src := range []string{"10.0.0.1", "192.168.0.1", "172.16.0.1", "203.0.113.1"} {
					for _, port := range []uint16{1500, 2500, 3500} {
						d := tcp4(src, "198.51.100.1", 1, port)
						for _, x := range as {
							x.Add(&d)
						}
					}
				}
			}
			send(a)
			read(t, a)
			a.reconfigure(tt.to)
			send(a, fresh)
			if got, want := valuesOf(read(t, a)), valuesOf(read(t, fresh)); !cmp.Equal(got, want) {
				t.Errorf("series after the reload in the order %q, want %q", got, want)
			}
		})
	}
}

// TestReconfigureLiveBaseline renames the network of a flow that live
// accounting follows between two dumps: the flow's new series gets only
// what it moved since the last dump, not its whole counters.
func TestReconfigureLiveBaseline(t *testing.T) {
	u := reloadConfig(t, map[string][]netip.Prefix{"lan": prefixes("10.0.0.0/8")}, nil, nil)
	p, err := New(Config{GroupBy: []Key{KeySrcNet}, MaxSeries: 10, Live: true, Networks: u.Networks})
	if err != nil {
		t.Fatal(err)
	}
	d := &FakeDumper{Table: map[uint32]ctnl.Flow{}, Hidden: map[uint32]bool{}}
	f := pipelineFlow("10.0.0.1", "198.51.100.2", 6, 443, 10, 1000, 0, 0, 0)
	f.ID, f.Start, f.Stop = 7, time.Now().Add(time.Hour).UnixNano(), 0
	d.Table[7] = f
	if err := p.Open(0, func() (Conns, error) { return Conns{Listener: &FakeListener{}, Dumper: d}, nil }); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	round := func() {
		t.Helper()
		st, err := p.cur.poll.round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.cur.poll.next(st, err)
	}
	round()
	f.OrigBytes = 1500
	d.Table[7] = f
	got, err := p.Reconfigure(reloadConfig(t, map[string][]netip.Prefix{"office": prefixes("10.0.0.0/8")}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Reconfigured{Removed: 1}); got != want {
		t.Errorf("Reconfigure = %+v, want %+v", got, want)
	}
	round()
	var r Reading
	if err := p.Read(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]uint64{"office": 500}, bytesBySeries(r)); diff != "" {
		t.Errorf("after the reload (-want +got):\n%s", diff)
	}
	if st := p.Stats(); st.Flows.Tracked != 1 || st.Flows.Resets != 0 {
		t.Errorf("live accounting after the reload: %+v, want the flow still tracked, no reset", st.Flows)
	}
}

// TestReconfigureEventFilter checks that the listener receiving gets the
// new event filter, that one Opened before a Reconfigure gets it when Run
// starts, and that a filter the kernel refuses leaves everything as it was.
func TestReconfigureEventFilter(t *testing.T) {
	deny := func(prefix string) (*Filter, *ctnl.EventFilter) {
		f, err := NewFilter(nil, []Rule{{Src: prefixes(prefix)}})
		if err != nil {
			t.Fatal(err)
		}
		ef, err := f.EventFilter()
		if err != nil {
			t.Fatal(err)
		}
		return f, ef
	}
	u := reloadConfig(t, map[string][]netip.Prefix{"lan": prefixes("10.0.0.0/8")}, nil, nil)
	p, err := New(Config{GroupBy: []Key{KeySrcNet}, MaxSeries: 10, Networks: u.Networks})
	if err != nil {
		t.Fatal(err)
	}
	l := &FakeListener{Done: make(chan struct{})}
	if err := p.Open(0, func() (Conns, error) { return Conns{Listener: l}, nil }); err != nil {
		t.Fatal(err)
	}
	f1, ef1 := deny("192.168.0.0/16")
	if _, err := p.Reconfigure(Update{Networks: u.Networks, Filter: f1, EventFilter: ef1}); err != nil {
		t.Fatal(err)
	}
	if p.EventFilter() != ef1 {
		t.Errorf("EventFilter after Reconfigure is not the new program: the next Open would dial with the former one")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-l.Done
	if len(l.Filters) != 1 || l.Filters[0] != ef1 {
		t.Fatalf("the listener opened before the reload got %v at Run, want the reloaded program", l.Filters)
	}
	f2, ef2 := deny("172.16.0.0/12")
	if _, err := p.Reconfigure(Update{Networks: u.Networks, Filter: f2, EventFilter: ef2}); err != nil {
		t.Fatal(err)
	}
	if len(l.Filters) != 2 || l.Filters[1] != ef2 {
		t.Fatalf("the listener receiving got %v, want the second reload's program last", l.Filters)
	}
	l.SetFilterErr = errors.New("ENOMEM")
	renamed := reloadConfig(t, map[string][]netip.Prefix{"office": prefixes("10.0.0.0/8")}, nil, nil)
	if _, err := p.Reconfigure(Update{Networks: renamed.Networks}); !errors.Is(err, errEventFilter) {
		t.Errorf("Reconfigure with a program the kernel refuses: %v, want %v", err, errEventFilter)
	}
	p.agg.countDestroyed([]ctnl.Flow{pipelineFlow("10.0.0.1", "198.51.100.2", 6, 443, 1, 100, 0, 0, 0), pipelineFlow("172.16.0.1", "198.51.100.2", 6, 443, 1, 100, 0, 0, 0)})
	var r Reading
	if err := p.Read(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]uint64{"lan": 100}, bytesBySeries(r)); diff != "" {
		t.Errorf("after a refused reload, counted by the former networks and filter (-want +got):\n%s", diff)
	}
	if p.EventFilter() != ef2 {
		t.Errorf("EventFilter after a refused reload is not the program still running")
	}
}

// BenchmarkReconfigure measures a reload over 100,000 series (one per
// source address in lan) that all continue, while another network is
// renamed back and forth: lan's id stays, or moves (its series get new
// keys). It is the time the aggregator is locked, in which events and dumps
// wait.
func BenchmarkReconfigure(b *testing.B) {
	nets := func(name string) *Networks {
		n, err := NewNetworks(map[string][]netip.Prefix{"lan": prefixes("10.0.0.0/8"), name: prefixes("192.168.0.0/16")})
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	for _, bc := range []struct {
		name  string
		other [2]string
	}{
		{"ids unchanged", [2]string{"dmz", "aaa"}},
		{"ids moved", [2]string{"dmz", "zzz"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			u := []Update{{Networks: nets(bc.other[0])}, {Networks: nets(bc.other[1])}}
			a := mustAggregator(b, Config{GroupBy: []Key{KeySrcNet, KeySrc}, MaxSeries: 200_000, Networks: u[0].Networks})
			for i := range 100_000 {
				d := tcp4(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), "198.51.100.1", 1, 2)
				a.Add(&d)
			}
			if _, err := a.Read(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if r := a.reconfigure(u[i%2]); r.Kept != 100_000 {
					b.Fatalf("reconfigure = %+v, want every series kept", r)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100_000), "ns/series")
		})
	}
}
