package flow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func read(t *testing.T, a *aggregator) Reading {
	t.Helper()
	r, err := a.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// seriesOf returns the series of r whose key values are vals.
func seriesOf(r Reading, vals ...string) (Series, bool) {
	for _, s := range r.Series {
		if slices.Equal(s.Values, vals) {
			return s, true
		}
	}
	return Series{}, false
}

// totals sums the counters of every series of r.
func totals(r Reading) Series {
	var sum Series
	for i := range r.Series {
		sum.add(&r.Series[i])
	}
	return sum
}

// valuesOf lists the key values of every series of r, joined by commas.
func valuesOf(r Reading) []string {
	var out []string
	for _, s := range r.Series {
		out = append(out, strings.Join(s.Values, ","))
	}
	return out
}

func mustAggregator(t testing.TB, cfg Config) *aggregator {
	t.Helper()
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = 1000
	}
	a, err := newAggregator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLabelValues(t *testing.T) {
	nets, err := NewNetworks(map[string][]netip.Prefix{
		"lan":  prefixes("192.168.0.0/16", "fd00::/8"),
		"srv":  prefixes("192.168.10.0/24"),
		"host": prefixes("fd00::10/128"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ports, err := NewPorts([]PortRange{{22, 22}, {443, 443}, {8000, 8100}})
	if err != nil {
		t.Fatal(err)
	}
	snat := tcp4("192.168.1.2", "198.51.100.1", 40000, 443)
	snat.ReplyDst, snat.ReplyDPort = addr("203.0.113.1"), 40000
	snatPort := tcp4("192.168.1.2", "198.51.100.1", 40000, 443)
	snatPort.ReplyDPort = 61000
	dnat := tcp4("198.51.100.1", "203.0.113.1", 40000, 80)
	dnat.ReplySrc, dnat.ReplySPort = addr("192.168.10.5"), 8080
	both := tcp4("192.168.1.2", "203.0.113.1", 40000, 80)
	both.ReplySrc, both.ReplyDst = addr("192.168.10.5"), addr("203.0.113.1")
	noReply := delta{Family: familyIPv4, Proto: ProtoTCP, Src: addr("192.168.1.2"), Dst: addr("198.51.100.1")}
	v6 := delta{Family: familyIPv6, Proto: ProtoICMPv6, Src: addr("fd00::10"), Dst: addr("2001:db8::1")}
	v6.ReplySrc, v6.ReplyDst = v6.Dst, v6.Src

	tests := []struct {
		name    string
		groupBy string
		ports   *Ports
		nets    *Networks
		d       delta
		want    []string
	}{
		{name: "default", groupBy: DefaultGroupBy, d: tcp4("192.0.2.1", "192.0.2.2", 40000, 443), want: []string{"ipv4", "tcp", "443"}},
		{name: "order", groupBy: "dport,proto,family", d: tcp4("192.0.2.1", "192.0.2.2", 40000, 443), want: []string{"443", "tcp", "ipv4"}},
		{name: "ipv6", groupBy: "family,proto", d: v6, want: []string{"ipv6", "icmpv6"}},
		{name: "unknown family", groupBy: "family", d: delta{Family: 2}, want: []string{"2"}},
		{name: "udp", groupBy: "proto", d: delta{Proto: ProtoUDP}, want: []string{"udp"}},
		{name: "icmp", groupBy: "proto", d: delta{Proto: ProtoICMP}, want: []string{"icmp"}},
		{name: "sctp", groupBy: "proto", d: delta{Proto: ProtoSCTP}, want: []string{"sctp"}},
		{name: "gre", groupBy: "proto", d: delta{Proto: ProtoGRE}, want: []string{"gre"}},
		{name: "udplite", groupBy: "proto", d: delta{Proto: ProtoUDPLite}, want: []string{"udplite"}},
		{name: "dccp", groupBy: "proto", d: delta{Proto: ProtoDCCP}, want: []string{"dccp"}},
		{name: "unnamed proto", groupBy: "proto", d: delta{Proto: 50}, want: []string{"50"}},
		{name: "ports", groupBy: "sport,dport", d: tcp4("192.0.2.1", "192.0.2.2", 40000, 0), want: []string{"40000", "0"}},
		{name: "no ports icmp", groupBy: "proto,sport,dport", d: delta{Proto: ProtoICMP, SPort: 3, DPort: 4}, want: []string{"icmp", "none", "none"}},
		{name: "no ports esp", groupBy: "proto,dport", d: delta{Proto: 50, DPort: 4}, want: []string{"50", "none"}},
		{name: "port list single", groupBy: "sport,dport", ports: ports, d: tcp4("192.0.2.1", "192.0.2.2", 22, 443), want: []string{"22", "443"}},
		{name: "port list range", groupBy: "dport", ports: ports, d: tcp4("192.0.2.1", "192.0.2.2", 1, 8080), want: []string{"8000-8100"}},
		{name: "port list other", groupBy: "sport,dport", ports: ports, d: tcp4("192.0.2.1", "192.0.2.2", 40000, 80), want: []string{"other", "other"}},
		{name: "port list icmp", groupBy: "dport", ports: ports, d: delta{Proto: ProtoICMP}, want: []string{"none"}},
		{name: "addresses v4", groupBy: "src,dst", d: tcp4("192.0.2.1", "198.51.100.7", 1, 2), want: []string{"192.0.2.1", "198.51.100.7"}},
		{name: "addresses v6", groupBy: "src,dst", d: v6, want: []string{"fd00::10", "2001:db8::1"}},
		{name: "addresses mapped", groupBy: "src,dst", d: tcp4("::ffff:192.0.2.1", "::ffff:c633:6407", 1, 2), want: []string{"192.0.2.1", "198.51.100.7"}},
		{name: "address zone dropped", groupBy: "src", d: delta{Src: addr("fe80::1%eth0")}, want: []string{"fe80::1"}},
		{name: "address missing", groupBy: "src", d: delta{}, want: []string{"invalid"}},
		{name: "networks", groupBy: "src_net,dst_net", nets: nets, d: tcp4("192.168.10.9", "192.168.1.1", 1, 2), want: []string{"srv", "lan"}},
		{name: "networks other", groupBy: "src_net,dst_net", nets: nets, d: tcp4("10.0.0.1", "::ffff:192.168.10.1", 1, 2), want: []string{"other", "srv"}},
		{name: "networks v6", groupBy: "src_net,dst_net", nets: nets, d: v6, want: []string{"host", "other"}},
		{name: "no networks", groupBy: "src_net", d: tcp4("192.168.10.9", "192.168.1.1", 1, 2), want: []string{"other"}},
		{name: "zone", groupBy: "zone", d: delta{Zone: 7}, want: []string{"7"}},
		{name: "mark", groupBy: "mark", d: delta{Mark: 0x1f}, want: []string{"0x1f"}},
		{name: "mark zero", groupBy: "mark", d: delta{}, want: []string{"0x0"}},
		{name: "nat none", groupBy: "nat", d: tcp4("192.0.2.1", "192.0.2.2", 1, 2), want: []string{"none"}},
		{name: "nat none v6", groupBy: "nat", d: v6, want: []string{"none"}},
		{name: "nat no reply tuple", groupBy: "nat", d: noReply, want: []string{"none"}},
		{name: "snat", groupBy: "nat", d: snat, want: []string{"snat"}},
		{name: "snat port only", groupBy: "nat", d: snatPort, want: []string{"snat"}},
		{name: "dnat", groupBy: "nat", d: dnat, want: []string{"dnat"}},
		{name: "both", groupBy: "nat", d: both, want: []string{"both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gb, err := ParseGroupBy(tt.groupBy)
			if err != nil {
				t.Fatal(err)
			}
			a := mustAggregator(t, Config{GroupBy: gb, Ports: tt.ports, Networks: tt.nets})
			d := tt.d
			d.Final = true
			a.Add(&d)
			r := read(t, a)
			s, ok := seriesOf(r, tt.want...)
			if !ok {
				t.Fatalf("no series %q in %q", tt.want, valuesOf(r))
			}
			if s.Flows != 1 || len(r.Series) != 1 {
				t.Errorf("flows = %v in %d series, want 1 in 1", s.Flows, len(r.Series))
			}
		})
	}
}

func TestUpdateSamples(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeyFamily, KeyProto, KeyDPort}})
	d1 := tcp4("192.0.2.1", "192.0.2.2", 40000, 443)
	d1.OrigPackets, d1.OrigBytes, d1.ReplyPackets, d1.ReplyBytes = 10, 1000, 20, 20000
	d2 := d1 // an intermediate delta of the same flow, then its final one
	d2.Final = true
	d3 := tcp4("192.0.2.1", "192.0.2.2", 40000, 80)
	d3.OrigPackets, d3.OrigBytes, d3.Final = 1, 60, true
	d4 := delta{Family: familyIPv6, Proto: ProtoUDP, DPort: 53, OrigPackets: 1, OrigBytes: 80, ReplyPackets: 1, ReplyBytes: 300, Final: true}
	a.AddBatch([]delta{d4, d1, d3})
	a.Add(&d2)

	got := read(t, a)
	want := []Series{
		{Values: []string{"ipv4", "tcp", "80"}, Flows: 1, OrigPackets: 1, OrigBytes: 60},
		{Values: []string{"ipv4", "tcp", "443"}, Flows: 1, OrigPackets: 20, OrigBytes: 2000, ReplyPackets: 40, ReplyBytes: 40000},
		{Values: []string{"ipv6", "udp", "53"}, Flows: 1, OrigPackets: 1, OrigBytes: 80, ReplyPackets: 1, ReplyBytes: 300},
	}
	if diff := cmp.Diff(want, got.Series, cmpopts.IgnoreFields(Series{}, "ID")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	ids := map[uint32]bool{}
	for _, s := range got.Series {
		ids[s.ID] = true
	}
	if len(ids) != len(got.Series) {
		t.Errorf("series share IDs: %+v", got.Series)
	}
	if !slices.Equal(got.Keys, []Key{KeyFamily, KeyProto, KeyDPort}) || got.MaxSeries != 1000 || got.Live {
		t.Errorf("keys %q, max series %d, live %v", got.Keys, got.MaxSeries, got.Live)
	}
	if st := a.Stats(); st != (SeriesStats{Series: 3, Flows: 3}) || got.Stats != st {
		t.Errorf("Stats() = %+v, reading's %+v", st, got.Stats)
	}
	// The output is stable.
	if diff := cmp.Diff(got, read(t, a)); diff != "" {
		t.Errorf("second Read differs:\n%s", diff)
	}
}

func TestDurationHistogram(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeyDPort}})
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	flow := func(family, proto uint8, d time.Duration, final bool) delta {
		return delta{Family: family, Proto: proto, Start: t0.UnixNano(), Stop: t0.Add(d).UnixNano(), Final: final}
	}
	a.AddBatch([]delta{
		flow(familyIPv4, ProtoTCP, 500*time.Microsecond, true),
		flow(familyIPv4, ProtoTCP, time.Millisecond, true), // on the bound: le="0.001"
		flow(familyIPv4, ProtoTCP, 2*time.Second, true),
		flow(familyIPv4, ProtoTCP, 30*24*time.Hour, true),  // above every bound
		flow(familyIPv4, ProtoTCP, time.Second, false),     // not final
		flow(familyIPv4, ProtoTCP, -time.Second, true),     // clock went back
		{Family: familyIPv4, Proto: ProtoTCP, Final: true}, // no timestamps
		{Family: familyIPv4, Proto: ProtoTCP, Start: t0.UnixNano(), Final: true},
		flow(familyIPv6, ProtoUDP, time.Minute, true),
	})
	hists := read(t, a).Durations
	if len(hists) != 2 {
		t.Fatalf("%d histograms, want 2", len(hists))
	}
	h := hists[0]
	if h.Family != "ipv4" || h.Proto != "tcp" {
		t.Errorf("first histogram %s %s", h.Family, h.Proto)
	}
	if h.Count != 4 {
		t.Errorf("count = %d, want 4", h.Count)
	}
	if want := 0.0005 + 0.001 + 2 + 30*86400; h.Sum != want {
		t.Errorf("sum = %v, want %v", h.Sum, want)
	}
	bounds := DurationBuckets()
	for ub, want := range map[float64]uint64{.001: 2, .01: 2, 1: 2, 5: 3, 604800: 3} {
		if i := slices.Index(bounds, ub); h.Buckets[i] != want {
			t.Errorf("bucket le=%v = %d, want %d", ub, h.Buckets[i], want)
		}
	}
	if len(h.Buckets) != 17 || len(bounds) != 17 {
		t.Errorf("%d buckets, %d bounds, want 17", len(h.Buckets), len(bounds))
	}
	if h2 := hists[1]; h2.Family != "ipv6" || h2.Proto != "udp" || h2.Buckets[slices.Index(bounds, 60)] != 1 || h2.Buckets[slices.Index(bounds, 30)] != 0 {
		t.Errorf("second histogram %+v", h2)
	}
	if st := a.Stats(); st.Flows != 8 {
		t.Errorf("Flows = %d, want 8", st.Flows)
	}
}

// TestOverflow checks that deltas past the series limit are summed into the
// overflow series, and that the limit counts it: 3 series at most, 2 of
// them of their own key values.
func TestOverflow(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeyFamily, KeyProto, KeyDPort}, MaxSeries: 3})
	var want Series
	r := rand.New(rand.NewPCG(1, 2))
	overflowed := 0
	seen := map[uint16]bool{}
	for i := range 1000 {
		d := tcp4("192.0.2.1", "192.0.2.2", 1, uint16(r.IntN(10)))
		d.OrigPackets, d.OrigBytes = r.Uint64N(100), r.Uint64N(1<<40)
		d.ReplyPackets, d.ReplyBytes = r.Uint64N(100), r.Uint64N(1<<40)
		d.Final = i%2 == 0
		if !seen[d.DPort] && len(seen) == 2 {
			overflowed++
		} else {
			seen[d.DPort] = true
		}
		want.OrigPackets += d.OrigPackets
		want.OrigBytes += d.OrigBytes
		want.ReplyPackets += d.ReplyPackets
		want.ReplyBytes += d.ReplyBytes
		if d.Final {
			want.Flows++
		}
		a.Add(&d)
	}
	got := read(t, a)
	if diff := cmp.Diff(want, totals(got)); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	s, ok := seriesOf(got, "other", "other", "other")
	if !ok || !s.Overflow || got.Series[len(got.Series)-1].Values[0] != "other" {
		t.Fatalf("no overflow series last: %q", valuesOf(got))
	}
	if st := a.Stats(); st.Series != 3 || st.Overflowed != uint64(overflowed) || st.Flows != 500 {
		t.Errorf("Stats() = %+v, want 3 series, %d overflowed, 500 flows", st, overflowed)
	}
	if len(got.Series) != 3 {
		t.Errorf("%d series, want 3: %q", len(got.Series), valuesOf(got))
	}
}

func TestOverflowMergesIntoAllOtherSeries(t *testing.T) {
	ports, err := NewPorts([]PortRange{{22, 22}})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAggregator(t, Config{GroupBy: []Key{KeySrcNet, KeyDPort}, Ports: ports, MaxSeries: 1})
	d1 := tcp4("192.0.2.1", "192.0.2.2", 1, 80) // reads other, other
	d1.OrigBytes = 100
	d2 := tcp4("192.0.2.1", "192.0.2.2", 1, 22) // past the limit
	d2.OrigBytes = 10
	a.AddBatch([]delta{d1, d2})
	got := read(t, a).Series
	if len(got) != 1 {
		t.Fatalf("got %d series, want one: %+v", len(got), got)
	}
	if got[0].OrigBytes != 110 || !slices.Equal(got[0].Values, []string{"other", "other"}) {
		t.Errorf("merged series %+v, want orig bytes 110", got[0])
	}
}

func TestSeriesTTL(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a := mustAggregator(t, Config{GroupBy: []Key{KeyDPort}, SeriesTTL: 10 * time.Second, MaxSeries: 3})
	a.now = func() time.Time { return now }
	a.start = now
	at := func(sec int, ds ...delta) {
		now = a.start.Add(time.Duration(sec) * time.Second)
		a.AddBatch(ds)
	}
	ports := func() []string { return valuesOf(read(t, a)) }
	d := func(port uint16) delta { return delta{Proto: ProtoTCP, DPort: port, OrigBytes: 1, Final: true} }

	at(0, d(80), d(443), d(22)) // 22 overflows
	at(5, d(443))
	at(9)
	if got := ports(); !slices.Equal(got, []string{"80", "443", "other"}) {
		t.Errorf("at 9s series %q", got)
	}
	at(10)
	if got := ports(); !slices.Equal(got, []string{"443"}) {
		t.Errorf("at 10s series %q, want 443 only", got)
	}
	if st := a.Stats(); st.Expired != 2 || st.Series != 1 {
		t.Errorf("at 10s Stats() = %+v, want 2 expired, 1 series", st)
	}
	at(11, d(80))
	if s, _ := seriesOf(read(t, a), "80"); s.Flows != 1 {
		t.Errorf("re-created series flows = %v, want 1", s.Flows)
	}
	at(100)
	if got := ports(); len(got) != 0 {
		t.Errorf("at 100s series %q, want none", got)
	}
	if n := read(t, a).Stats.Expired; n != 4 {
		t.Errorf("expired = %v, want 4", n)
	}
}

func TestFilteredDeltas(t *testing.T) {
	f, err := NewFilter(nil, []Rule{{Zone: []uint16{7}}})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAggregator(t, Config{GroupBy: []Key{KeyZone}, Filter: f})
	a.AddBatch([]delta{{Zone: 7, OrigBytes: 5, Final: true}, {Zone: 8, OrigBytes: 6, Final: true}, {Zone: 7}})
	got := read(t, a)
	if _, ok := seriesOf(got, "7"); ok {
		t.Error("filtered zone 7 has a series")
	}
	if got.Stats.Filtered != 2 {
		t.Errorf("filtered = %v, want 2", got.Stats.Filtered)
	}
	if st := a.Stats(); st != (SeriesStats{Series: 1, Filtered: 2, Flows: 1}) {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestNewAggregatorErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no keys", Config{MaxSeries: 1}, errEmptyGroupBy},
		{"unknown key", Config{GroupBy: []Key{"port"}, MaxSeries: 1}, errUnknownKey},
		{"duplicate key", Config{GroupBy: []Key{KeySrc, KeySrc}, MaxSeries: 1}, errDuplicateKey},
		{"no limit", Config{GroupBy: []Key{KeySrc}}, errMaxSeries},
		{"negative limit", Config{GroupBy: []Key{KeySrc}, MaxSeries: -1}, errMaxSeries},
		{"negative ttl", Config{GroupBy: []Key{KeySrc}, MaxSeries: 1, SeriesTTL: -time.Second}, errSeriesTTL},
		{"ok", Config{GroupBy: []Key{KeySrc}, MaxSeries: 1}, nil},
	}
	for _, tt := range tests {
		if _, err := newAggregator(tt.cfg); !errors.Is(err, tt.want) {
			t.Errorf("%s: newAggregator() error = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestReadCanceled(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeySrc}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read() error = %v, want %v", err, context.Canceled)
	}
}

func TestAddNil(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeySrc}})
	a.Add(nil)
	a.AddBatch(nil)
	if st := a.Stats(); st != (SeriesStats{}) {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestAddDoesNotAllocate(t *testing.T) {
	nets, err := NewNetworks(map[string][]netip.Prefix{"lan": prefixes("192.168.0.0/16", "fd00::/8"), "h": prefixes("192.168.1.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	ports, err := NewPorts([]PortRange{{443, 443}, {8000, 8100}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFilter([]Rule{{Src: prefixes("192.168.0.0/16")}}, []Rule{{Zone: []uint16{9}}})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAggregator(t, Config{GroupBy: keys, Networks: nets, Ports: ports, Filter: f, SeriesTTL: time.Hour})
	d := tcp4("192.168.1.2", "::ffff:192.168.1.1", 40000, 8080)
	d.ReplyDst = addr("203.0.113.1")
	d.Final, d.Start, d.Stop = true, 1e9, 11e9
	a.Add(&d)
	batch := []delta{d, d, d}
	if n := testing.AllocsPerRun(100, func() { a.Add(&d); a.AddBatch(batch) }); n != 0 {
		t.Errorf("Add allocates %v times per call", n)
	}
}

func TestConcurrentRead(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeyDPort, KeySrc}, MaxSeries: 50, SeriesTTL: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := a.Read(ctx); err != nil && ctx.Err() == nil {
					t.Error(err)
				}
				_ = a.Stats()
			}
		})
	}
	batch := make([]delta, 64)
	for i := range 200 {
		for j := range batch {
			batch[j] = tcp4(fmt.Sprintf("192.0.2.%d", j), "192.0.2.1", 1, uint16(i%7))
		}
		a.AddBatch(batch)
		a.Add(&batch[0])
	}
	cancel()
	wg.Wait()
}

// TestRandomDeltas feeds random deltas through every key, with overflow,
// and checks that no two series share key values and that nothing is lost.
func TestRandomDeltas(t *testing.T) {
	nets, err := NewNetworks(map[string][]netip.Prefix{"a": prefixes("10.0.0.0/8", "fd00::/8"), "b": prefixes("10.1.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	ports, err := NewPorts([]PortRange{{Lo: 0, Hi: 0}, {Lo: 1, Hi: 3}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	pick := func(as ...string) netip.Addr { return addr(as[r.IntN(len(as))]) }
	addrs := []string{"10.0.0.1", "10.1.0.1", "192.0.2.1", "::ffff:10.1.2.3", "fd00::1", "2001:db8::1", "0.0.0.0"}
	for _, gb := range []string{"src_net,dport", "sport,dport", "family,proto,sport,dport,src,dst,src_net,dst_net,zone,mark,nat"} {
		keys, err := ParseGroupBy(gb)
		if err != nil {
			t.Fatal(err)
		}
		for _, maxSeries := range []int{1, 5, 1000} {
			a := mustAggregator(t, Config{GroupBy: keys, MaxSeries: maxSeries, Networks: nets, Ports: ports})
			var sum float64
			for range 2000 {
				d := delta{Family: uint8(r.IntN(8)), Proto: uint8(r.IntN(256)), Src: pick(addrs...), Dst: pick(addrs...),
					SPort: uint16(r.IntN(5)), DPort: uint16(r.IntN(5)), ReplySrc: pick(addrs...), ReplyDst: pick(addrs...),
					Zone: uint16(r.IntN(3)), Mark: uint32(r.IntN(3)), OrigBytes: uint64(r.IntN(1000)), Final: r.IntN(2) == 0}
				if r.IntN(4) == 0 {
					d.Proto = ProtoTCP
				}
				sum += float64(d.OrigBytes)
				a.Add(&d)
			}
			got := read(t, a)
			seen := map[string]bool{}
			for _, v := range valuesOf(got) {
				if seen[v] {
					t.Errorf("%s max %d: two series %q", gb, maxSeries, v)
				}
				seen[v] = true
			}
			if tot := float64(totals(got).OrigBytes); tot != sum {
				t.Errorf("%s max %d: orig bytes %v, want %v", gb, maxSeries, tot, sum)
			}
			if n := len(got.Series); n > maxSeries || got.Stats.Series != n {
				t.Errorf("%s max %d: %d series, counted as %d", gb, maxSeries, n, got.Stats.Series)
			}
		}
	}
}

// TestReadIntoKeepsOrder adds and expires series in rounds and checks, at
// each, that ReadInto into a reused Reading gives what a fresh Read gives,
// in the order of a full sort of the series' keys, and that Layout changes
// exactly when series came or went.
func TestReadIntoKeepsOrder(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	keys, err := ParseGroupBy("dport,src,proto")
	if err != nil {
		t.Fatal(err)
	}
	a := mustAggregator(t, Config{GroupBy: keys, MaxSeries: 300, SeriesTTL: 5 * time.Second, Live: true})
	a.now = func() time.Time { return now }
	a.start = now
	r := rand.New(rand.NewPCG(7, 8))
	var reused Reading
	var last []string // the IDs and values of the previous reading
	var lastLayout uint64
	for round := range 60 {
		now = now.Add(time.Second)
		n := r.IntN(40)
		if round%10 == 9 {
			n = 0 // a round without new series: nothing to sort
		}
		for range n {
			d := tcp4(fmt.Sprintf("192.0.2.%d", r.IntN(20)), "192.0.2.1", 1, uint16(r.IntN(30)))
			if r.IntN(3) == 0 {
				d.Proto = ProtoUDP
			}
			d.OrigBytes, d.Final = uint64(r.IntN(1000)), true
			a.Add(&d)
		}
		if err := a.ReadInto(context.Background(), &reused); err != nil {
			t.Fatal(err)
		}
		fresh := read(t, a)
		if diff := cmp.Diff(fresh, reused, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round %d: ReadInto differs from Read (-Read +ReadInto):\n%s", round, diff)
		}
		// The order of a full sort, as Read used to make it.
		a.mu.Lock()
		var want []*series
		for _, s := range a.series {
			want = append(want, s)
		}
		slices.SortFunc(want, func(x, y *series) int { return a.compare(&x.key, &y.key) })
		a.mu.Unlock()
		var got []string
		for _, s := range reused.Series {
			if !s.Overflow {
				got = append(got, strings.Join(s.Values, ","))
			}
		}
		var wantVals []string
		for _, s := range want {
			wantVals = append(wantVals, strings.Join(s.values, ","))
		}
		if !slices.Equal(got, wantVals) {
			t.Fatalf("round %d: series in order\n%q\nwant\n%q", round, got, wantVals)
		}
		if len(reused.Series) > 300 || reused.Stats.Series != len(reused.Series) {
			t.Fatalf("round %d: %d series, counted as %d", round, len(reused.Series), reused.Stats.Series)
		}
		var ids []string
		for _, s := range reused.Series {
			ids = append(ids, fmt.Sprint(s.ID, s.Values))
		}
		if round > 0 && !slices.Equal(ids, last) && reused.Layout == lastLayout {
			t.Errorf("round %d: other series, same layout %d", round, reused.Layout)
		}
		if round > 0 && n == 0 && slices.Equal(ids, last) && reused.Layout != lastLayout {
			t.Errorf("round %d: nothing added or removed, the layout changed", round)
		}
		last, lastLayout = ids, reused.Layout
	}
}
