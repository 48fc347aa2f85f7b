package flow

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// topClock is a clock tests move by hand.
type topClock struct{ now time.Time }

func (c *topClock) Now() time.Time { return c.now }

// topAggregator returns an aggregator by src with top talkers on, whose
// clock (and so the talkers' window) is clk.
func topAggregator(t testing.TB, live bool, top TopConfig, clk *topClock) *aggregator {
	t.Helper()
	if top.Count == 0 {
		top.Count = 10
	}
	if top.By == nil {
		top.By = []Key{KeySrc}
	}
	if top.Window == 0 {
		top.Window = time.Minute
	}
	if top.Capacity == 0 {
		top.Capacity = DefaultTopCapacity
	}
	if top.IPv4Bits == 0 {
		top.IPv4Bits, top.IPv6Bits = DefaultTopIPv4Bits, DefaultTopIPv6Bits
	}
	a, err := newAggregator(Config{GroupBy: []Key{KeySrc}, MaxSeries: 1 << 20, Live: live, Top: top})
	if err != nil {
		t.Fatal(err)
	}
	// The talkers' window began at the real now, when they were made:
	// the test's clock starts after it and moves by whole steps.
	clk.now = time.Now().Add(time.Hour)
	a.now = clk.Now
	a.start = clk.now
	if a.live != nil {
		a.live.start = clk.now.UnixNano()
	}
	return a
}

// udpFlow returns a UDP flow from src:sport to 198.51.100.1:53 with
// counters c (orig packets, orig bytes, reply packets, reply bytes), its
// reply coming back from reply (the destination when not DNATed).
func udpFlow(src string, sport uint16, id uint32, c [4]uint64, reply string) ctnl.Flow {
	e := ctnl.Flow{
		Family: familyIPv4, Orig: ctnl.Tuple{Proto: ProtoUDP, Src: addr(src), Dst: addr("198.51.100.1"), SPort: sport, DPort: 53},
		ID: id, OrigPackets: c[0], OrigBytes: c[1], ReplyPackets: c[2], ReplyBytes: c[3],
	}
	if e.Orig.Src.Is6() {
		e.Family, e.Orig.Dst = familyIPv6, addr("2001:db8:ffff::1")
	}
	e.Reply = ctnl.Tuple{Proto: ProtoUDP, Src: e.Orig.Dst, Dst: e.Orig.Src, SPort: 53, DPort: sport}
	if reply != "" {
		e.Reply.Src, e.Reply.SPort = addr(reply), 5353
	}
	return e
}

// dumpRound runs one complete dump round of es at the clock's now.
func dumpRound(a *aggregator, es ...ctnl.Flow) {
	a.beginDump()
	a.countDumped(es)
	a.markGone(a.missing())
	a.endDump(true, 0)
}

// talkerBytes returns the top talkers' orig and reply bytes by key value.
func talkerBytes(r TopReading) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for _, t := range r.Talkers {
		out[t.Values[0]] = [2]uint64{t.OrigBytes, t.ReplyBytes}
	}
	return out
}

// seriesBytes returns the flow series' orig and reply bytes by src.
func seriesBytes(t *testing.T, a *aggregator) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for _, s := range read(t, a).Series {
		if s.OrigBytes+s.ReplyBytes > 0 {
			out[s.Values[0]] = [2]uint64{s.OrigBytes, s.ReplyBytes}
		}
	}
	return out
}

// TestTopAgreesWithSeriesLive checks that the top talkers get every live
// delta the series get, dump after dump and at the DESTROY that ends a
// flow: a flow a dump knows already goes straight to its series, and must
// reach the talkers too.
func TestTopAgreesWithSeriesLive(t *testing.T) {
	clk := &topClock{}
	a := topAggregator(t, true, TopConfig{}, clk)
	f1 := func(c [4]uint64) ctnl.Flow { return udpFlow("192.0.2.1", 1000, 1, c, "") }
	f2 := func(c [4]uint64) ctnl.Flow { return udpFlow("192.0.2.2", 2000, 2, c, "") }
	for i, step := range []func(){
		func() { dumpRound(a, f1([4]uint64{1, 100, 1, 50})) }, // baseline
		func() { dumpRound(a, f1([4]uint64{3, 400, 2, 90}), f2([4]uint64{1, 10, 0, 0})) },
		func() { dumpRound(a, f1([4]uint64{9, 9000, 4, 700}), f2([4]uint64{2, 30, 1, 5})) },
		func() { a.countDestroyed([]ctnl.Flow{f1([4]uint64{10, 9500, 5, 800})}) },
		func() { dumpRound(a, f2([4]uint64{4, 80, 2, 15})) },
	} {
		clk.now = clk.now.Add(time.Second)
		step()
		if got, want := talkerBytes(a.readTop(true)), seriesBytes(t, a); !gocmp.Equal(got, want, cmpopts.EquateEmpty()) {
			t.Errorf("after step %d: talkers %v, series %v", i, got, want)
		}
	}
}

// TestTopFlows checks the flows of the last round that moved the most
// bytes: the n largest deltas, largest first, with their tuples, NAT and
// rate; the baseline shows none, and a round that fails keeps the last.
func TestTopFlows(t *testing.T) {
	clk := &topClock{}
	a := topAggregator(t, true, TopConfig{Flows: 2}, clk)
	flows := func(scale uint64) []ctnl.Flow {
		return []ctnl.Flow{
			udpFlow("192.0.2.1", 1001, 1, [4]uint64{1, 100 * scale, 1, 0}, ""),
			udpFlow("192.0.2.2", 1002, 2, [4]uint64{1, 500 * scale, 1, 500 * scale}, "10.0.0.9"), // DNATed
			udpFlow("192.0.2.3", 1003, 3, [4]uint64{1, 50 * scale, 1, 0}, ""),
			udpFlow("2001:db8::4", 1004, 4, [4]uint64{1, 300 * scale, 1, 0}, ""),
		}
	}
	dumpRound(a, flows(1)...)
	if r := a.readTop(true); len(r.Flows) != 0 {
		t.Fatalf("after the baseline: %+v, want no flow", r.Flows)
	}
	clk.now = clk.now.Add(10 * time.Second)
	dumpRound(a, flows(3)...)
	r := a.readTop(true)
	want := []TopFlow{
		{Family: familyIPv4, Proto: ProtoUDP, Src: addr("192.0.2.2"), Dst: addr("198.51.100.1"), SPort: 1002, DPort: 53,
			ReplySrc: addr("10.0.0.9"), ReplyDst: addr("192.0.2.2"), ReplySPort: 5353, ReplyDPort: 1002, NAT: true,
			OrigBytes: 1000, ReplyBytes: 1000, BytesPerSecond: 200},
		{Family: familyIPv6, Proto: ProtoUDP, Src: addr("2001:db8::4"), Dst: addr("2001:db8:ffff::1"), SPort: 1004, DPort: 53,
			ReplySrc: addr("2001:db8:ffff::1"), ReplyDst: addr("2001:db8::4"), ReplySPort: 53, ReplyDPort: 1004,
			OrigBytes: 600, BytesPerSecond: 60},
	}
	if diff := gocmp.Diff(want, r.Flows, cmpopts.EquateComparable(netip.Addr{})); diff != "" || r.FlowsInterval != 10*time.Second {
		t.Errorf("flows over %v (-want +got):\n%s", r.FlowsInterval, diff)
	}
	// A round that fails half-way shows nothing new.
	clk.now = clk.now.Add(10 * time.Second)
	a.beginDump()
	a.countDumped(flows(100)[:1])
	a.endDump(false, 0)
	if r := a.readTop(true); len(r.Flows) != 2 || r.Flows[0].Src != addr("192.0.2.2") {
		t.Errorf("after a failed round: %+v, want the last complete round's", r.Flows)
	}
	// A round where nothing moved shows no flow.
	dumpRound(a, flows(100)...)
	dumpRound(a, flows(100)...)
	if r := a.readTop(true); len(r.Flows) != 0 {
		t.Errorf("after an idle round: %+v, want none", r.Flows)
	}
}

// TestTopWindowForgets checks that the talkers hold what moved in the last
// window only: one that stops is gone once the window has passed it, one
// that goes on stays with what it moved in the window.
func TestTopWindowForgets(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(map[bool]string{false: "DESTROY", true: "live"}[live], func(t *testing.T) {
			clk := &topClock{}
			a := topAggregator(t, live, TopConfig{Window: 6 * time.Second}, clk)
			for i := range uint64(12) {
				batch := []ctnl.Flow{udpFlow("192.0.2.20", uint16(2000+i), uint32(100+i), [4]uint64{1, 1000, 1, 0}, "")}
				if i < 2 {
					batch = append(batch, udpFlow("192.0.2.10", uint16(1000+i), uint32(i+1), [4]uint64{1, 5000, 1, 0}, ""))
				}
				a.countDestroyed(batch)
				got := talkerBytes(a.readTop(live))
				// The window holds the steps i-5 to i: 192.0.2.10 moved at
				// steps 0 and 1 only.
				want := map[string][2]uint64{"192.0.2.20": {min(i+1, 6) * 1000, 0}}
				if n := min(i+1, 2) - min(max(i, 5)-5, 2); n > 0 {
					want["192.0.2.10"] = [2]uint64{n * 5000, 0}
				}
				if !gocmp.Equal(got, want) {
					t.Errorf("at %ds: %v, want %v", i, got, want)
				}
				clk.now = clk.now.Add(time.Second)
			}
		})
	}
}

// TestTopSumsAcrossBatches delivers DESTROY events in many small batches,
// as the listener does in a burst, across steps of the window, and reads
// the talkers only now and then: the sums a batch leaves for the next ones
// must reach the step they were counted in (handed over before the window
// moves) and be in every reading, so that each reading equals a ledger of
// the last window's steps, to the byte.
func TestTopSumsAcrossBatches(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(map[bool]string{false: "DESTROY", true: "live"}[live], func(t *testing.T) {
			clk := &topClock{}
			a := topAggregator(t, live, TopConfig{Window: 6 * time.Second, Count: 50}, clk)
			rng := rand.New(rand.NewPCG(5, 6))
			ledger := map[int]map[string]uint64{} // second -> src -> orig bytes
			id := uint32(0)
			for sec := range 20 {
				ledger[sec] = map[string]uint64{}
				for range 10 {
					var batch []ctnl.Flow
					for range 1 + rng.IntN(4) {
						id++
						src := fmt.Sprintf("192.0.2.%d", rng.IntN(40))
						b := uint64(1 + rng.IntN(2000))
						batch = append(batch, udpFlow(src, uint16(1000+id), id, [4]uint64{1, b, 0, 0}, ""))
						ledger[sec][src] += b
					}
					a.countDestroyed(batch)
				}
				// Readings at 2, 5 and 8 s, then none until 19 s: the
				// sums of 12 and 13 s, out of that window, must have
				// reached their steps before it moved on.
				if sec != 2 && sec != 5 && sec != 8 && sec != 19 {
					clk.now = clk.now.Add(time.Second)
					continue
				}
				want := map[string][2]uint64{}
				for s := max(0, sec-5); s <= sec; s++ {
					for src, b := range ledger[s] {
						w := want[src]
						w[0] += b
						want[src] = w
					}
				}
				r := a.readTop(live)
				if got := talkerBytes(r); !gocmp.Equal(got, want) {
					t.Fatalf("at %ds: talkers differ from the ledger of the window (-got +want):\n%s", sec, gocmp.Diff(got, want))
				}
				for _, tk := range r.Talkers {
					if tk.BytesError != 0 {
						t.Fatalf("at %ds: %v has error %d, want 0", sec, tk.Values, tk.BytesError)
					}
				}
				clk.now = clk.now.Add(time.Second)
			}
		})
	}
}

// TestTopPrefixes checks that addresses are aggregated to the configured
// prefixes: IPv6 to its /64 by default, so that the addresses of one host
// are one talker, IPv4 to the length asked.
func TestTopPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		bits4      int
		srcs       []string
		wantTalker map[string][2]uint64
	}{
		{"IPv6 /64", 32, []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1:0:ffff::3", "2001:db8:2::1"},
			map[string][2]uint64{"2001:db8:1::/64": {300, 0}, "2001:db8:2::/64": {100, 0}}},
		{"IPv4 /32", 32, []string{"192.0.2.1", "192.0.2.2", "::ffff:192.0.2.2"},
			map[string][2]uint64{"192.0.2.1": {100, 0}, "192.0.2.2": {200, 0}}},
		{"IPv4 /24", 24, []string{"192.0.2.1", "192.0.2.200", "198.51.100.7"},
			map[string][2]uint64{"192.0.2.0/24": {200, 0}, "198.51.100.0/24": {100, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &topClock{}
			a := topAggregator(t, false, TopConfig{IPv4Bits: tc.bits4, IPv6Bits: 64}, clk)
			for i, s := range tc.srcs {
				a.countDestroyed([]ctnl.Flow{udpFlow(s, uint16(1000+i), uint32(i+1), [4]uint64{1, 100, 0, 0}, "")})
			}
			r := a.readTop(false)
			if got := talkerBytes(r); !gocmp.Equal(got, tc.wantTalker) {
				t.Errorf("talkers %v, want %v", got, tc.wantTalker)
			}
			for _, tk := range r.Talkers {
				if tk.BytesError != 0 {
					t.Errorf("%v: error %d, want 0", tk.Values, tk.BytesError)
				}
			}
		})
	}
}

// TestTopOverCapacityLedger feeds DESTROY events of a Zipf workload of
// 100,000 sources through the aggregation, well over the capacity, with the
// flow series by src (never full) as the ledger: every talker's bytes are
// within [truth, truth + error], counted per direction within [truth -
// error, truth], and every source whose true total exceeds the k-th
// largest by more than the largest error is reported.
func TestTopOverCapacityLedger(t *testing.T) {
	const sources, events = 100_000, 600_000
	for _, tc := range []struct{ capacity, k int }{{DefaultTopCapacity, 10}, {1024, 100}} {
		capacity, k := tc.capacity, tc.k
		t.Run(fmt.Sprintf("capacity %d top %d", capacity, k), func(t *testing.T) {
			clk := &topClock{}
			a := topAggregator(t, false, TopConfig{Count: k, Capacity: capacity}, clk)
			z := rand.NewZipf(rand.New(rand.NewPCG(uint64(capacity), 7)), 1.1, 1, sources-1)
			rng := rand.New(rand.NewPCG(3, 4))
			batch := make([]ctnl.Flow, 0, 256)
			for i := range events {
				n := uint32(z.Uint64())
				src := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
				e := udpFlow("192.0.2.1", uint16(i), uint32(i+1), [4]uint64{1, 40 + rng.Uint64N(1460), rng.Uint64N(3), rng.Uint64N(3000)}, "")
				e.Orig.Src, e.Reply.Dst = src, src
				batch = append(batch, e)
				if len(batch) == cap(batch) {
					a.countDestroyed(batch)
					batch = batch[:0]
				}
				if i%(events/3) == 0 {
					// Three steps of 10s: three buckets of the window
					// evict, none expires.
					clk.now = clk.now.Add(10 * time.Second)
				}
			}
			a.countDestroyed(batch)
			truth := seriesBytes(t, a)
			r := a.readTop(false)
			if len(r.Talkers) != k {
				t.Fatalf("%d talkers, want %d", len(r.Talkers), k)
			}
			var maxErr uint64
			seen := map[string]bool{}
			for i, tk := range r.Talkers {
				tr := truth[tk.Values[0]]
				up := tk.OrigBytes + tk.ReplyBytes + tk.BytesError
				if tot := tr[0] + tr[1]; up < tot || up-tk.BytesError > tot {
					t.Errorf("talker %d %s: %d bytes ± %d, truth %d", i, tk.Values[0], up, tk.BytesError, tot)
				}
				if tk.OrigBytes > tr[0] || tr[0] > tk.OrigBytes+tk.BytesError || tk.ReplyBytes > tr[1] || tr[1] > tk.ReplyBytes+tk.BytesError {
					t.Errorf("talker %d %s: orig %d reply %d ± %d, truth %v", i, tk.Values[0], tk.OrigBytes, tk.ReplyBytes, tk.BytesError, tr)
				}
				maxErr = max(maxErr, tk.BytesError)
				seen[tk.Values[0]] = true
			}
			if a.top.t.Snapshot(k).Exact {
				t.Fatalf("%d keys tracked, and exact: the workload did not overflow capacity %d", r.Tracked, capacity)
			}
			totals := make([]uint64, 0, len(truth))
			for _, tr := range truth {
				totals = append(totals, tr[0]+tr[1])
			}
			slices.SortFunc(totals, func(x, y uint64) int { return cmp.Compare(y, x) })
			kth := totals[k-1]
			for src, tr := range truth {
				if tot := tr[0] + tr[1]; tot > kth+maxErr && !seen[src] {
					t.Errorf("%s moved %d bytes, over the %d-th largest %d by more than %d, and is not reported", src, tot, k, kth, maxErr)
				}
			}
			t.Logf("%d sources, %d tracked, largest error %d bytes, top %d bytes, %d-th %d", len(truth), r.Tracked, maxErr, totals[0], k, kth)
		})
	}
}

// TestTopDestroyBatchExact checks that the sums a batch of DESTROY events
// keeps by talker reach the talkers exactly, under the capacity: batches of
// more distinct IPv4 talkers than a batch sums at once, and IPv6 talkers
// among them, which are not summed.
func TestTopDestroyBatchExact(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(fmt.Sprintf("live %v", live), func(t *testing.T) {
			clk := &topClock{}
			a := topAggregator(t, live, TopConfig{Count: 1000, IPv4Bits: 32, IPv6Bits: 128}, clk)
			id := uint32(0)
			for round := range 4 {
				batch := make([]ctnl.Flow, 0, 3*batchMax)
				for i := range cap(batch) {
					id++
					src := fmt.Sprintf("10.0.%d.%d", i%700/256, i%700%256)
					if i%13 == 0 {
						src = fmt.Sprintf("2001:db8::%x", i%50)
					}
					batch = append(batch, udpFlow(src, uint16(i), id, [4]uint64{1, uint64(40 + i + round), 1, uint64(i % 7)}, ""))
				}
				a.countDestroyed(batch)
			}
			got, want := talkerBytes(a.readTop(false)), seriesBytes(t, a)
			if diff := gocmp.Diff(want, got); diff != "" {
				t.Errorf("talkers differ from the series (-series +talkers):\n%s", diff)
			}
		})
	}
}

// TestTopKey4 checks that the talker rebuilt from an IPv4 talker's 64-bit
// key, as the batch and round sums keep it, is the talker key makes of its
// addresses: for each side told apart and each prefix.
func TestTopKey4(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.201.77"), netip.MustParseAddr("203.0.113.250")
	for _, by := range [][]Key{{KeySrc}, {KeyDst}, {KeySrc, KeyDst}} {
		for _, bits := range []int{0, 1, 8, 24, 31, 32} {
			t.Run(fmt.Sprintf("%v/%d", by, bits), func(t *testing.T) {
				tk, err := newTalkers(TopConfig{Count: 1, By: by, Window: time.Minute, Capacity: 16, IPv4Bits: bits, IPv6Bits: 64}, time.Now)
				if err != nil {
					t.Fatal(err)
				}
				want := tk.key(src, dst)
				if got := tk.key4To16(tk.key4(src, dst)); got != want {
					t.Errorf("key4To16(key4(%v, %v)) = %x, want %x", src, dst, got, want)
				}
			})
		}
	}
}
