package flow

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// liveSums are what a scrape of a live aggregator says, summed over series.
type liveSums struct {
	Flows, OrigPackets, OrigBytes, ReplyPackets, ReplyBytes, Active float64
}

func sums(t *testing.T, a *aggregator) liveSums {
	t.Helper()
	tot := totals(read(t, a))
	return liveSums{float64(tot.Flows), float64(tot.OrigPackets), float64(tot.OrigBytes), float64(tot.ReplyPackets), float64(tot.ReplyBytes), float64(tot.Active)}
}

// liveFlow is a flow of the scripts below: a UDP flow from port sport.
type liveFlow struct {
	sport uint16
	id    uint32
	start int64 // seconds relative to the aggregator's start
}

// at returns the flow as a dump or event reports it with counters c
// (orig packets, orig bytes, reply packets, reply bytes).
func (f liveFlow) at(a *aggregator, c [4]uint64) ctnl.Flow {
	e := ctnl.Flow{
		Family: familyIPv4, Orig: ctnl.Tuple{Proto: ProtoUDP, Src: addr("192.0.2.1"), Dst: addr("192.0.2.2"), SPort: f.sport, DPort: 53},
		ID: f.id, OrigPackets: c[0], OrigBytes: c[1], ReplyPackets: c[2], ReplyBytes: c[3],
	}
	e.Reply = ctnl.Tuple{Proto: ProtoUDP, Src: e.Orig.Dst, Dst: e.Orig.Src, SPort: e.Orig.DPort, DPort: e.Orig.SPort}
	if f.start != 0 {
		e.Start = a.live.start + f.start*1e9
	}
	return e
}

// step is one thing that happens to a live aggregator.
type step struct {
	// dump lists entries in one complete dump, after which the flows it
	// missed and the kernel no longer holds are gone, and closed out when
	// closeGone is set; destroy delivers DESTROY events.
	dump      []ctnl.Flow
	destroy   []ctnl.Flow
	closeGone bool
	// midDump, when set with dump, delivers these events after the dump
	// began and before it lists its entries.
	midDump []ctnl.Flow
	want    liveSums
}

func runSteps(t *testing.T, a *aggregator, steps []step) {
	t.Helper()
	for i, s := range steps {
		switch {
		case s.dump != nil:
			n, _ := a.beginDump()
			a.countDestroyed(s.midDump)
			a.countDumped(s.dump)
			a.markGone(a.missing())
			through := uint32(0)
			if s.closeGone {
				through = n
			}
			a.endDump(true, through)
		default:
			a.countDestroyed(s.destroy)
		}
		if got := sums(t, a); got != s.want {
			t.Errorf("after step %d: %+v, want %+v", i, got, s.want)
		}
	}
}

func TestLiveStateMachine(t *testing.T) {
	cfg := Config{GroupBy: []Key{KeyProto}, MaxSeries: 10, Live: true}
	old := liveFlow{sport: 1000, id: 1, start: -60} // began before accounting
	newer := liveFlow{sport: 1001, id: 2, start: 5}
	noTS := liveFlow{sport: 1002, id: 3} // nf_conntrack_timestamp off
	tests := []struct {
		name  string
		steps func(a *aggregator) []step
	}{
		{"baseline then growth then DESTROY", func(a *aggregator) []step {
			return []step{
				{dump: []ctnl.Flow{old.at(a, [4]uint64{10, 1000, 5, 500})}, want: liveSums{Active: 1}},
				{dump: []ctnl.Flow{old.at(a, [4]uint64{12, 1200, 6, 600})}, want: liveSums{0, 2, 200, 1, 100, 1}},
				{destroy: []ctnl.Flow{old.at(a, [4]uint64{15, 1500, 7, 700})}, want: liveSums{1, 5, 500, 2, 200, 1}},
				{dump: []ctnl.Flow{}, want: liveSums{1, 5, 500, 2, 200, 0}},
			}
		}},
		{"a flow that began after the start counts from zero", func(a *aggregator) []step {
			return []step{
				{dump: []ctnl.Flow{}, want: liveSums{}},
				{dump: []ctnl.Flow{newer.at(a, [4]uint64{3, 300, 1, 100})}, want: liveSums{0, 3, 300, 1, 100, 1}},
				{destroy: []ctnl.Flow{newer.at(a, [4]uint64{4, 400, 2, 200})}, want: liveSums{1, 4, 400, 2, 200, 1}},
			}
		}},
		{"a new flow in the baseline dump counts from zero too", func(a *aggregator) []step {
			return []step{
				{dump: []ctnl.Flow{newer.at(a, [4]uint64{3, 300, 1, 100}), old.at(a, [4]uint64{9, 900, 9, 900})}, want: liveSums{0, 3, 300, 1, 100, 2}},
			}
		}},
		{"without timestamps the baseline dump is the baseline", func(a *aggregator) []step {
			return []step{
				{dump: []ctnl.Flow{noTS.at(a, [4]uint64{3, 300, 1, 100})}, want: liveSums{Active: 1}},
				{dump: []ctnl.Flow{noTS.at(a, [4]uint64{4, 400, 1, 100})}, want: liveSums{0, 1, 100, 0, 0, 1}},
			}
		}},
		{"DESTROY before the dump lists the dying flow: tombstone", func(a *aggregator) []step {
			final := newer.at(a, [4]uint64{4, 400, 2, 200})
			return []step{
				{dump: []ctnl.Flow{}, want: liveSums{}},
				{dump: []ctnl.Flow{final}, midDump: []ctnl.Flow{final}, want: liveSums{1, 4, 400, 2, 200, 0}},
				{dump: []ctnl.Flow{}, want: liveSums{1, 4, 400, 2, 200, 0}},
			}
		}},
		{"a DESTROY twice counts once", func(a *aggregator) []step {
			final := newer.at(a, [4]uint64{4, 400, 2, 200})
			return []step{
				{destroy: []ctnl.Flow{final}, want: liveSums{1, 4, 400, 2, 200, 0}},
				{destroy: []ctnl.Flow{final}, want: liveSums{1, 4, 400, 2, 200, 0}},
			}
		}},
		{"unknown DESTROY of a flow older than the start counts no bytes", func(a *aggregator) []step {
			return []step{
				{destroy: []ctnl.Flow{old.at(a, [4]uint64{9, 900, 9, 900})}, want: liveSums{Flows: 1}},
			}
		}},
		{"zeroed counters: the rest after zero counts", func(a *aggregator) []step {
			return []step{
				{dump: []ctnl.Flow{old.at(a, [4]uint64{10, 1000, 5, 500})}, want: liveSums{Active: 1}},
				{dump: []ctnl.Flow{old.at(a, [4]uint64{20, 2000, 10, 1000})}, want: liveSums{0, 10, 1000, 5, 500, 1}},
				{dump: []ctnl.Flow{old.at(a, [4]uint64{1, 100, 1, 50})}, want: liveSums{0, 11, 1100, 6, 550, 1}},
				{destroy: []ctnl.Flow{old.at(a, [4]uint64{2, 200, 1, 60})}, want: liveSums{1, 12, 1200, 6, 560, 1}},
			}
		}},
		{"gone without DESTROY: closed out, a late DESTROY adds the rest", func(a *aggregator) []step {
			return []step{
				{dump: []ctnl.Flow{}, want: liveSums{}},
				{dump: []ctnl.Flow{newer.at(a, [4]uint64{3, 300, 1, 100})}, want: liveSums{0, 3, 300, 1, 100, 1}},
				// Missing from a dump, not yet known to be safe to close.
				{dump: []ctnl.Flow{}, want: liveSums{0, 3, 300, 1, 100, 0}},
				{dump: []ctnl.Flow{}, closeGone: true, want: liveSums{1, 3, 300, 1, 100, 0}},
				{destroy: []ctnl.Flow{newer.at(a, [4]uint64{4, 400, 1, 100})}, want: liveSums{1, 4, 400, 1, 100, 0}},
			}
		}},
		{"gone then listed again is alive", func(a *aggregator) []step {
			return []step{
				{dump: []ctnl.Flow{old.at(a, [4]uint64{1, 1, 1, 1})}, want: liveSums{Active: 1}},
				{dump: []ctnl.Flow{}, want: liveSums{}},
				{dump: []ctnl.Flow{old.at(a, [4]uint64{2, 2, 1, 1})}, closeGone: true, want: liveSums{0, 1, 1, 0, 0, 1}},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustAggregator(t, cfg)
			runSteps(t, a, tt.steps(a))
		})
	}
}

func TestLiveStats(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeyProto}, MaxSeries: 10, Live: true})
	f := liveFlow{sport: 1, id: 1, start: 1}
	a.beginDump()
	a.countDumped([]ctnl.Flow{f.at(a, [4]uint64{1, 1, 1, 1})})
	a.endDump(true, 0)
	a.beginDump()
	a.countDumped([]ctnl.Flow{f.at(a, [4]uint64{0, 0, 0, 0})})
	a.endDump(true, 0)
	a.beginDump()
	a.markGone(a.missing())
	a.endDump(true, 3)
	st, ok := a.liveStats()
	if !ok {
		t.Fatal("LiveStats reports live accounting off")
	}
	want := LiveStats{Dumps: 3, Resets: 1, ClosedOut: 1, Tombstones: 1, TableBytes: st.TableBytes}
	if st != want || st.TableBytes == 0 {
		t.Errorf("LiveStats = %+v, want %+v", st, want)
	}
	// The closed-out flow is forgotten after closedKeep and a later dump.
	now := time.Now()
	a.now = func() time.Time { return now.Add((closedKeep + 1) * time.Second) }
	a.beginDump()
	a.endDump(true, 4)
	if st, _ := a.liveStats(); st.Tombstones != 0 {
		t.Errorf("%d tombstones after %ds, want 0", st.Tombstones, closedKeep+1)
	}
}

func TestLiveTCPStatesAndIncompleteDump(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeyProto}, MaxSeries: 10, Live: true})
	tcp := func(port uint16, st uint8) ctnl.Flow {
		d := tcp4("192.0.2.1", "192.0.2.2", port, 80)
		return ctnl.Flow{Family: d.Family, Orig: ctnl.Tuple{Proto: d.Proto, Src: d.Src, Dst: d.Dst, SPort: d.SPort, DPort: d.DPort}, ID: uint32(port), TCPState: st}
	}
	a.beginDump()
	a.countDumped([]ctnl.Flow{tcp(1, tcpEstablished), tcp(2, tcpEstablished), tcp(3, tcpTimeWait)})
	a.endDump(true, 0)
	// A dump that fails half-way leaves the gauges as they were.
	a.beginDump()
	a.countDumped([]ctnl.Flow{tcp(1, tcpEstablished)})
	a.endDump(false, 0)
	want := []StateCount{{"established", 2}, {"time_wait", 1}}
	if got := read(t, a).Series[0].TCP; !slices.Equal(got, want) {
		t.Errorf("TCP = %v, want %v", got, want)
	}
	// States seen once keep being reported, at 0.
	a.beginDump()
	a.countDumped([]ctnl.Flow{tcp(1, tcpEstablished)})
	a.endDump(true, 0)
	want = []StateCount{{"established", 1}, {"time_wait", 0}}
	if got := read(t, a).Series[0].TCP; !slices.Equal(got, want) {
		t.Errorf("TCP = %v after the flow left, want %v", got, want)
	}
}

func TestLiveFilterNotTracked(t *testing.T) {
	filter, err := NewFilter(nil, []Rule{{DPort: []PortRange{{53, 53}}}})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAggregator(t, Config{GroupBy: []Key{KeyProto}, MaxSeries: 10, Live: true, Filter: filter})
	f := liveFlow{sport: 1, id: 1, start: 1}
	a.beginDump()
	a.countDumped([]ctnl.Flow{f.at(a, [4]uint64{1, 1, 1, 1})})
	a.endDump(true, 0)
	a.countDestroyed([]ctnl.Flow{f.at(a, [4]uint64{2, 2, 2, 2})})
	if st, _ := a.liveStats(); st.Tracked != 0 {
		t.Errorf("%d flows tracked, want 0: the filter rejects them", st.Tracked)
	}
	if got := sums(t, a); got != (liveSums{}) {
		t.Errorf("sums %+v, want none", got)
	}
	if got := a.Stats().Filtered; got != 1 {
		t.Errorf("filtered = %d, want 1 (the DESTROY; dumps do not count)", got)
	}
	if st, _ := a.liveStats(); st.Filtered != 1 || st.Entries != 0 {
		t.Errorf("dump entries filtered = %d, entries = %d; want 1 and 0 (the one dumped entry)", st.Filtered, st.Entries)
	}
}

// TestLiveDumpFilteredCounted checks that every dumped entry the filters
// reject is counted, once per dump that lists it, and that accepted entries
// are not.
func TestLiveDumpFilteredCounted(t *testing.T) {
	filter, err := NewFilter(nil, []Rule{{DPort: []PortRange{{53, 53}}}})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAggregator(t, Config{GroupBy: []Key{KeyProto}, MaxSeries: 10, Live: true, Filter: filter})
	denied := func(id uint32) ctnl.Flow {
		return liveFlow{sport: uint16(id), id: id, start: 1}.at(a, [4]uint64{1, 1, 1, 1})
	}
	accepted := func(id uint32) ctnl.Flow {
		f := denied(id)
		f.Orig.DPort = 80
		return f
	}
	tests := []struct {
		name          string
		dump          []ctnl.Flow
		total, active int
	}{
		{"baseline: two denied, one accepted", []ctnl.Flow{denied(1), denied(2), accepted(3)}, 2, 1},
		{"the same entries again count again", []ctnl.Flow{denied(1), denied(2), accepted(3)}, 4, 1},
		{"accepted entries only", []ctnl.Flow{accepted(3), accepted(4)}, 4, 2},
		{"an empty dump", nil, 4, 0},
		{"a new denied entry", []ctnl.Flow{denied(5)}, 5, 0},
	}
	for _, tt := range tests {
		a.beginDump()
		a.countDumped(tt.dump)
		a.endDump(true, 0)
		st, _ := a.liveStats()
		if int(st.Filtered) != tt.total || st.Entries != tt.active {
			t.Errorf("%s: dump entries filtered = %d, entries = %d; want %d and %d", tt.name, st.Filtered, st.Entries, tt.total, tt.active)
		}
	}
	if got := a.Stats().Filtered; got != 0 {
		t.Errorf("events filtered = %d, want 0: no DESTROY event came", got)
	}
}

func TestFilterNarrowing(t *testing.T) {
	v4 := prefixes("10.0.0.0/8")
	v6 := prefixes("fd00::/8")
	tests := []struct {
		name   string
		accept []Rule
		want   narrowing
	}{
		{"none", nil, narrowing{}},
		{"v4 only", []Rule{{Src: v4}, {Dst: v4}}, narrowing{Family: familyIPv4}},
		{"mixed families", []Rule{{Src: v4}, {Src: v6}}, narrowing{}},
		{"one rule without addresses", []Rule{{Src: v6}, {Proto: []uint8{6}}}, narrowing{}},
		{"same mark", []Rule{{Mark: []MarkMatch{{0x10, 0xf0}}}, {Mark: []MarkMatch{{0x10, 0xf0}}, Src: v4}}, narrowing{Mark: &MarkMatch{0x10, 0xf0}}},
		{"two marks", []Rule{{Mark: []MarkMatch{{0x10, 0}, {0x20, 0}}}}, narrowing{}},
		{"zone", []Rule{{Zone: []uint16{3}, Src: v6}}, narrowing{Family: familyIPv6, Zone: ptr(uint16(3))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFilter(tt.accept, []Rule{{Proto: []uint8{17}}})
			if err != nil {
				t.Fatal(err)
			}
			got := f.narrowing()
			if got.Family != tt.want.Family || !eqPtr(got.Mark, tt.want.Mark) || !eqPtr(got.Zone, tt.want.Zone) {
				t.Errorf("narrowing() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func eqPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func TestLiveReset(t *testing.T) {
	a := mustAggregator(t, Config{GroupBy: []Key{KeyProto}, MaxSeries: 10, Live: true})
	f := liveFlow{sport: 1, id: 1, start: 1}
	runSteps(t, a, []step{
		{dump: []ctnl.Flow{}, want: liveSums{}},
		{dump: []ctnl.Flow{f.at(a, [4]uint64{1, 100, 1, 50})}, want: liveSums{0, 1, 100, 1, 50, 1}},
	})
	a.resetLive()
	if got := sums(t, a); got != (liveSums{1, 1, 100, 1, 50, 0}) {
		t.Errorf("after reset: %+v, want the flow ended, its bytes kept, none active", got)
	}
	// The next dump is a baseline: a flow of the new namespace that began
	// before the reset counts from then on.
	old := liveFlow{sport: 2, id: 2, start: -1}
	runSteps(t, a, []step{
		{dump: []ctnl.Flow{old.at(a, [4]uint64{5, 500, 5, 500})}, want: liveSums{1, 1, 100, 1, 50, 1}},
	})
	if st, _ := a.liveStats(); st.ClosedOut != 1 || st.Tracked != 1 {
		t.Errorf("stats %+v: want 1 closed out, 1 tracked", st)
	}
}

// TestLiveDestroySeries checks the series a DESTROY event of a flow a dump
// listed is counted in: the one the flow's keys make when the event comes,
// whether or not it is the series the flow remembers.
func TestLiveDestroySeries(t *testing.T) {
	f := liveFlow{sport: 1000, id: 1, start: 5}
	tests := []struct {
		name string
		// between runs after the dump listed the flow with mark 0x1 and
		// before its DESTROY event; mark is the event's.
		between func(a *aggregator)
		mark    uint32
		// want are the series (by mark) and their orig bytes and flows.
		want map[string][2]uint64
	}{
		{"same mark: the remembered series", nil, 0x1, map[string][2]uint64{"0x1": {150, 1}}},
		{"mark changed: the new mark's series", nil, 0x2, map[string][2]uint64{"0x1": {100, 0}, "0x2": {50, 1}}},
		{"remembered series removed, its id taken by another", func(a *aggregator) {
			a.mu.Lock()
			for k, s := range a.series {
				delete(a.series, k)
				a.dropSeries(s)
			}
			a.mu.Unlock()
			other := liveFlow{sport: 2000, id: 2, start: 6}.at(a, [4]uint64{1, 7, 0, 0})
			other.Mark = 0x3
			a.countDestroyed([]ctnl.Flow{other})
		}, 0x1, map[string][2]uint64{"0x1": {50, 1}, "0x3": {7, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := newAggregator(Config{GroupBy: []Key{KeyMark}, MaxSeries: 10, Live: true})
			if err != nil {
				t.Fatal(err)
			}
			runSteps(t, a, []step{{dump: []ctnl.Flow{}}}) // the baseline
			listed := f.at(a, [4]uint64{1, 100, 0, 0})
			listed.Mark = 0x1
			a.beginDump()
			a.countDumped([]ctnl.Flow{listed})
			a.endDump(true, 0)
			if tt.between != nil {
				tt.between(a)
			}
			ev := f.at(a, [4]uint64{2, 150, 0, 0})
			ev.Mark = tt.mark
			a.countDestroyed([]ctnl.Flow{ev})
			got := map[string][2]uint64{}
			for _, s := range read(t, a).Series {
				got[s.Values[0]] = [2]uint64{s.OrigBytes, s.Flows}
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("series (orig bytes, flows) by mark: %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLiveOverflowEvents checks that Stats.Overflowed counts every delta
// summed into the overflow series: the dump that first keys a flow, the
// later dumps that find it moved (not those that find it idle), and its
// DESTROY event, whichever path each takes.
func TestLiveOverflowEvents(t *testing.T) {
	a, err := newAggregator(Config{GroupBy: []Key{KeyMark}, MaxSeries: 2, Live: true})
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, a, []step{{dump: []ctnl.Flow{}}}) // the baseline
	kept, over := liveFlow{sport: 1000, id: 1, start: 5}, liveFlow{sport: 2000, id: 2, start: 5}
	dump := func(c [4]uint64) {
		k, o := kept.at(a, c), over.at(a, c)
		k.Mark, o.Mark = 0x1, 0x2
		a.beginDump()
		a.countDumped([]ctnl.Flow{k, o})
		a.endDump(true, 0)
	}
	overflowed := func() uint64 { return read(t, a).Stats.Overflowed }
	steps := []struct {
		name string
		do   func()
		want uint64
	}{
		{"first dump keys the flow", func() { dump([4]uint64{1, 100, 0, 0}) }, 1},
		{"it moved", func() { dump([4]uint64{2, 200, 0, 0}) }, 2},
		{"it did not move", func() { dump([4]uint64{2, 200, 0, 0}) }, 2},
		{"its DESTROY event", func() {
			e := over.at(a, [4]uint64{3, 300, 0, 0})
			e.Mark = 0x2
			a.countDestroyed([]ctnl.Flow{e})
		}, 3},
	}
	for _, s := range steps {
		s.do()
		if got := overflowed(); got != s.want {
			t.Fatalf("after %s: %d deltas overflowed, want %d", s.name, got, s.want)
		}
	}
	r := read(t, a)
	o, ok := seriesOf(r, "other")
	if !ok || o.OrigBytes != 300 {
		t.Fatalf("overflow series %+v (found %v), want 300 orig bytes", o, ok)
	}
}
