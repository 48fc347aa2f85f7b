package topk

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// key is a realistic key: an IPv6 address (or a mapped IPv4 one) and its
// prefix length.
type key struct {
	addr [16]byte
	bits uint8
}

func keyOf(i uint64) key {
	var k key
	for j := range 8 {
		k.addr[15-j] = byte(i >> (8 * j))
	}
	k.bits = 128
	return k
}

// clock is a hand-moved clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// harness drives a TopK and a ledger of the same Adds, by the slot of the
// clock they landed in.
type harness struct {
	t      testing.TB
	clk    *clock
	tk     *TopK[key]
	epoch  time.Time
	width  time.Duration
	nb     int
	ledger map[int64]map[key]Counts
}

func newHarness(t testing.TB, capacity int, window time.Duration, buckets int) *harness {
	t.Helper()
	clk := &clock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	tk, err := New(Config[key]{Capacity: capacity, Window: window, Buckets: buckets, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, clk: clk, tk: tk, epoch: clk.now, width: tk.width, nb: tk.nb, ledger: map[int64]map[key]Counts{}}
}

func (h *harness) slot() int64 { return int64(h.clk.now.Sub(h.epoch) / h.width) }

func (h *harness) add(k key, ob, op, rb, rp uint64) {
	h.tk.Add(k, ob, op, rb, rp)
	if ob|op|rb|rp == 0 {
		return
	}
	s := h.slot()
	m := h.ledger[s]
	if m == nil {
		m = map[key]Counts{}
		h.ledger[s] = m
	}
	c := m[k]
	c.OrigBytes += ob
	c.OrigPackets += op
	c.ReplyBytes += rb
	c.ReplyPackets += rp
	m[k] = c
}

func (h *harness) advance(d time.Duration) {
	h.clk.now = h.clk.now.Add(d)
	h.tk.Advance()
}

// truth sums the ledger over the window at the clock's now.
func (h *harness) truth() map[key]Counts {
	now := h.slot()
	out := map[key]Counts{}
	for s, m := range h.ledger {
		if s <= now-int64(h.nb) {
			continue
		}
		for k, c := range m {
			o := out[k]
			o.OrigBytes += c.OrigBytes
			o.OrigPackets += c.OrigPackets
			o.ReplyBytes += c.ReplyBytes
			o.ReplyPackets += c.ReplyPackets
			out[k] = o
		}
	}
	return out
}

// check takes a Snapshot of the n top rows and checks it against the
// ledger: every value within its error, the order, the recall of the keys
// that must be there; with exact, error 0 and the exact top n.
func (h *harness) check(n int, exact bool) Snapshot[key] {
	h.t.Helper()
	s := h.tk.Snapshot(n)
	truth := h.truth()
	if exact {
		if !s.Exact || s.MaxError != 0 {
			h.t.Fatalf("Exact %v, MaxError %d; want exact", s.Exact, s.MaxError)
		}
		if s.Tracked != len(truth) {
			h.t.Errorf("Tracked %d, want %d", s.Tracked, len(truth))
		}
	}
	if want := min(n, len(truth)); len(s.Rows) != want && (exact || len(s.Rows) > n) {
		h.t.Fatalf("%d rows, want %d", len(s.Rows), want)
	}
	seen := map[key]bool{}
	for i, r := range s.Rows {
		if seen[r.Key] {
			h.t.Fatalf("row %d: key %v twice", i, r.Key)
		}
		seen[r.Key] = true
		if i > 0 && s.Rows[i-1].Bytes() < r.Bytes() {
			h.t.Fatalf("row %d: %d bytes after %d", i, r.Bytes(), s.Rows[i-1].Bytes())
		}
		tc := truth[r.Key]
		tb := tc.OrigBytes + tc.ReplyBytes
		if r.Bytes() < tb || r.Bytes()-r.Error > tb {
			h.t.Fatalf("row %d %v: %d bytes ± %d, truth %d", i, r.Key, r.Bytes(), r.Error, tb)
		}
		if r.OrigBytes > tc.OrigBytes || tc.OrigBytes > r.OrigBytes+r.Error ||
			r.ReplyBytes > tc.ReplyBytes || tc.ReplyBytes > r.ReplyBytes+r.Error ||
			r.OrigPackets > tc.OrigPackets || r.ReplyPackets > tc.ReplyPackets {
			h.t.Fatalf("row %d %v: counted %+v error %d, truth %+v", i, r.Key, r.Counts, r.Error, tc)
		}
		if exact && (r.Counts != tc || r.Error != 0) {
			h.t.Fatalf("row %d %v: %+v error %d, want %+v exactly", i, r.Key, r.Counts, r.Error, tc)
		}
	}
	// Recall: a key whose truth exceeds the n-th largest truth by more than
	// the largest error must be reported.
	totals := make([]uint64, 0, len(truth))
	for _, c := range truth {
		totals = append(totals, c.OrigBytes+c.ReplyBytes)
	}
	slices.SortFunc(totals, func(a, b uint64) int { return cmp.Compare(b, a) })
	if n > 0 && len(totals) >= n {
		kth := totals[n-1]
		for k, c := range truth {
			if tb := c.OrigBytes + c.ReplyBytes; tb > kth+s.MaxError && !seen[k] {
				h.t.Fatalf("key %v moved %d bytes, over the %d-th largest %d by more than %d, and is not reported", k, tb, n, kth, s.MaxError)
			}
		}
	}
	if exact && n >= len(truth) {
		for k := range truth {
			if !seen[k] {
				h.t.Fatalf("key %v not reported", k)
			}
		}
	}
	return s
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config[key]
		want error
	}{
		{"no capacity", Config[key]{Window: time.Minute}, errCapacity},
		{"capacity over the index's positions", Config[key]{Capacity: MaxCapacity + 1, Window: time.Minute}, errCapacity},
		{"no window", Config[key]{Capacity: 1}, errWindow},
		{"too many buckets", Config[key]{Capacity: 1, Window: time.Minute, Buckets: 65}, errBuckets},
		{"negative buckets", Config[key]{Capacity: 1, Window: time.Minute, Buckets: -1}, errBuckets},
		{"window under a nanosecond per bucket", Config[key]{Capacity: 1, Window: 5, Buckets: 6}, errBuckets},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, tc.want) {
				t.Fatalf("New(%+v) = %v, want %v", tc.cfg, err, tc.want)
			}
		})
	}
	// 61s in 6 buckets: rounded down to whole nanoseconds per bucket.
	tk, err := New(Config[key]{Capacity: 8, Window: time.Minute + time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if tk.Capacity() != 8 || tk.Window() != 60999999996 || tk.nb != DefaultBuckets {
		t.Fatalf("Capacity %d Window %v buckets %d", tk.Capacity(), tk.Window(), tk.nb)
	}
}

func TestExactUnderCapacity(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity int
		keys     int
		adds     int
		buckets  int
		top      int
	}{
		{"one key", 1, 1, 100, 6, 5},
		{"capacity full", 64, 64, 5000, 6, 64},
		{"half full, top 10", 256, 128, 20000, 6, 10},
		{"one bucket", 32, 20, 1000, 1, 20},
		{"many buckets", 128, 100, 20000, 60, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.capacity, time.Minute, tc.buckets)
			rng := rand.New(rand.NewPCG(1, uint64(tc.keys)))
			for i := range tc.adds {
				k := keyOf(rng.Uint64N(uint64(tc.keys)))
				h.add(k, rng.Uint64N(1500), rng.Uint64N(3), rng.Uint64N(9000), rng.Uint64N(7))
				if i%(tc.adds/20+1) == 0 {
					// Stay within one window: distinct keys fit.
					h.advance(time.Minute / 40)
				}
			}
			h.check(tc.top, true)
			h.check(tc.keys, true)
		})
	}
}

func TestOrder(t *testing.T) {
	h := newHarness(t, 16, time.Minute, 6)
	h.add(keyOf(1), 100, 1, 0, 0)
	h.add(keyOf(2), 0, 0, 300, 1)
	h.add(keyOf(3), 150, 1, 50, 1)
	h.advance(10 * time.Second)
	h.add(keyOf(1), 300, 1, 0, 0)
	rows := h.check(3, true).Rows
	var got []key
	for _, r := range rows {
		got = append(got, r.Key)
	}
	if want := []key{keyOf(1), keyOf(2), keyOf(3)}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if r := rows[0]; r.OrigBytes != 400 || r.OrigPackets != 2 || r.Bytes() != 400 {
		t.Fatalf("first row %+v", r)
	}
	if rows := h.tk.Top(0); len(rows) != 0 {
		t.Fatalf("Top(0) = %v", rows)
	}
	if got := h.tk.Tracked(); got != 3 {
		t.Fatalf("Tracked %d, want 3", got)
	}
}

func TestWindowForgets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
		want  uint64 // bytes of the old key still in the window
	}{
		{"same bucket", 5 * time.Second, 100},
		{"five buckets on", 50 * time.Second, 100},
		{"just before the window ends", 59*time.Second + 999*time.Millisecond, 100},
		{"one window on", time.Minute, 0},
		{"long idle", time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 4, time.Minute, 6)
			h.add(keyOf(1), 100, 1, 0, 0)
			h.clk.now = h.clk.now.Add(tc.after)
			// No Advance: the reading leaves out what the window has
			// passed, without moving it.
			h.add(keyOf(2), 1, 1, 0, 0)
			rows := h.tk.Top(10)
			var got uint64
			for _, r := range rows {
				if r.Key == keyOf(1) {
					got = r.Bytes()
				}
			}
			if got != tc.want {
				t.Fatalf("old key %d bytes after %v, want %d (rows %+v)", got, tc.after, tc.want, rows)
			}
		})
	}
	// Forgetting in steps, with Adds in between, and reuse of the buckets.
	h := newHarness(t, 8, time.Minute, 6)
	for i := range 200 {
		h.add(keyOf(uint64(i%5)), uint64(i), 1, uint64(2*i), 1)
		h.advance(3 * time.Second)
		if i%7 == 0 {
			h.check(5, true)
		}
	}
	h.advance(time.Minute)
	if s := h.check(5, true); len(s.Rows) != 0 || s.Tracked != 0 {
		t.Fatalf("after a quiet window: %+v", s)
	}
}

// TestSnapshotMovesNothing checks that only Advance moves the window: a
// reading after the clock has moved leaves the current bucket current, so
// an Add after it lands where the Adds before it did, and StepEnd still
// says when that bucket's step ended.
func TestSnapshotMovesNothing(t *testing.T) {
	h := newHarness(t, 4, time.Minute, 6)
	bytesOf := func(k key) uint64 {
		for _, r := range h.tk.Top(10) {
			if r.Key == k {
				return r.Bytes()
			}
		}
		return 0
	}
	start := h.clk.now
	if end := h.tk.StepEnd(); !end.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("StepEnd %v, want 10s after the start %v", end, start)
	}
	h.tk.Add(keyOf(1), 100, 1, 0, 0)
	h.clk.now = h.clk.now.Add(10 * time.Second)
	if got := bytesOf(keyOf(1)); got != 100 {
		t.Fatalf("key 1: %d bytes a step later, want 100", got)
	}
	// Still in the first step's bucket: the reading moved nothing.
	h.tk.Add(keyOf(2), 50, 1, 0, 0)
	if end := h.tk.StepEnd(); !end.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("StepEnd %v after a reading, want still 10s after the start: the reading moved the window", end)
	}
	h.clk.now = h.clk.now.Add(55 * time.Second) // 65 s: the first step is out
	if got, got2 := bytesOf(keyOf(1)), bytesOf(keyOf(2)); got != 0 || got2 != 0 {
		t.Fatalf("a window after the first step: keys 1 and 2 have %d and %d bytes, want 0 and 0 (both in the first step)", got, got2)
	}
	h.tk.Advance()
	if end := h.tk.StepEnd(); !end.Equal(start.Add(70 * time.Second)) {
		t.Fatalf("StepEnd %v after Advance at 65s, want 70s after the start", end)
	}
	h.tk.Add(keyOf(3), 7, 1, 0, 0)
	if rows := h.tk.Top(10); len(rows) != 1 || rows[0].Key != keyOf(3) || rows[0].Bytes() != 7 {
		t.Fatalf("after Advance: rows %+v, want key 3 alone with 7 bytes", rows)
	}
}

func TestMerge(t *testing.T) {
	// Capacity 2, so one eviction at a time.
	h := newHarness(t, 2, time.Minute, 6)
	h.add(keyOf('a'), 100, 1, 0, 0)
	h.add(keyOf('b'), 10, 1, 0, 0)
	h.add(keyOf('c'), 1, 1, 0, 0) // evicts b: floor 10, c starts at 10
	h.advance(10 * time.Second)
	h.add(keyOf('b'), 50, 1, 0, 0)
	h.add(keyOf('c'), 0, 0, 5, 1)
	s := h.check(3, false)
	want := []Row[key]{
		{Key: keyOf('a'), Counts: Counts{OrigBytes: 100, OrigPackets: 1}},
		{Key: keyOf('b'), Counts: Counts{OrigBytes: 50, OrigPackets: 1}, Error: 10},
		{Key: keyOf('c'), Counts: Counts{OrigBytes: 1, OrigPackets: 1, ReplyBytes: 5, ReplyPackets: 1}, Error: 10},
	}
	if !slices.Equal(s.Rows, want) {
		t.Fatalf("merged\n%+v\nwant\n%+v", s.Rows, want)
	}
	if s.Exact || s.MaxError != 10 || s.Tracked != 3 {
		t.Fatalf("Exact %v MaxError %d Tracked %d", s.Exact, s.MaxError, s.Tracked)
	}
	// Once the evicting bucket leaves the window, the rest is exact again.
	h.advance(50 * time.Second)
	s = h.check(3, true)
	if len(s.Rows) != 2 || s.Rows[0].Key != keyOf('b') || s.Rows[0].Bytes() != 50 {
		t.Fatalf("after the first bucket expired: %+v", s.Rows)
	}
}

// zipf returns a Zipf-distributed key source over n keys.
func zipf(seed uint64, n uint64) func() uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 7)), 1.1, 1, n-1)
	return z.Uint64
}

func TestOverCapacityZipf(t *testing.T) {
	for _, tc := range []struct {
		capacity, top, adds int
	}{
		{1024, 10, 300_000},
		{4096, 50, 300_000},
		{256, 20, 200_000},
	} {
		t.Run(fmt.Sprintf("capacity %d top %d", tc.capacity, tc.top), func(t *testing.T) {
			if testing.Short() && tc.capacity != 1024 {
				t.Skip("-short: one case")
			}
			h := newHarness(t, tc.capacity, time.Minute, 6)
			next := zipf(uint64(tc.capacity), 100_000)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range tc.adds {
				h.add(keyOf(next()), 40+rng.Uint64N(1460), 1, rng.Uint64N(3000), rng.Uint64N(3))
				if i%(tc.adds/15) == 0 {
					// Fifteen steps of 7s: the window slides over evicting
					// buckets, and the merge sees several.
					h.advance(7 * time.Second)
					h.check(tc.top, false)
				}
			}
			s := h.check(tc.top, false)
			if s.Exact {
				t.Fatal("100,000 keys over the capacity, and exact")
			}
			t.Logf("tracked %d, largest error %d, top row %d bytes", s.Tracked, s.MaxError, s.Rows[0].Bytes())
		})
	}
}

// TestOverCapacityScan feeds scans of eight times the capacity, in turn,
// with deltas of few distinct sizes: every Add admits a key and the
// weights an eviction chooses among are mostly equal, so that the sampled
// threshold meets ties (and, with one size, falls back to the exact one).
func TestOverCapacityScan(t *testing.T) {
	for _, sizes := range []uint64{1, 3, 1000} {
		t.Run(fmt.Sprintf("sizes %d", sizes), func(t *testing.T) {
			const capacity = 1024
			h := newHarness(t, capacity, time.Minute, 6)
			for i := range 40 * capacity {
				h.add(keyOf(uint64(i%(8*capacity))), 100+uint64(i)%sizes, 1, 60, 1)
				if i%(5*capacity) == 0 {
					h.advance(10 * time.Second)
					h.check(10, false)
				}
			}
			s := h.check(10, false)
			if s.Exact || s.Tracked < capacity {
				t.Fatalf("Exact %v, tracked %d", s.Exact, s.Tracked)
			}
		})
	}
}

// TestEvictExactFallback makes the sampled threshold useless: with the
// generator's state 0, every sample is the first entry's weight, the
// largest or the smallest of the bucket, so that the estimate would evict
// nearly everything or nearly nothing. The eviction must then select
// exactly: an eighth evicted, the floor the largest weight evicted.
func TestEvictExactFallback(t *testing.T) {
	const capacity = 1024
	for _, firstLargest := range []bool{true, false} {
		t.Run(fmt.Sprintf("first largest %v", firstLargest), func(t *testing.T) {
			h := newHarness(t, capacity, time.Minute, 6)
			for i := range capacity {
				w := uint64(i+1) * 10
				if firstLargest {
					w = uint64(capacity-i) * 10
				}
				h.add(keyOf(uint64(i)), w, 1, 0, 0)
			}
			h.tk.rnd = 0
			h.add(keyOf(capacity), 1, 1, 0, 0)
			b := h.tk.cur
			want := capacity / evictFraction
			if b.floor != uint64(want)*10 || len(b.holes) != want-1 {
				t.Fatalf("floor %d, %d holes; want %d and %d", b.floor, len(b.holes), want*10, want-1)
			}
			h.check(10, false)
			s := h.tk.Snapshot(0)
			if s.Tracked != capacity-want+1 {
				t.Fatalf("tracked %d, want %d", s.Tracked, capacity-want+1)
			}
		})
	}
}

// TestAddAll checks that AddAll counts as the same Adds one by one do, over
// the capacity too (the evictions' sampling is deterministic): the two
// TopKs read the same, and zero deltas are ignored by both.
func TestAddAll(t *testing.T) {
	const capacity = 256
	clk := &clock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	one, err := New(Config[key]{Capacity: capacity, Window: time.Minute, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	all, err := New(Config[key]{Capacity: capacity, Window: time.Minute, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	var items []Item[key]
	for range 50 {
		items = items[:0]
		for range 100 {
			it := Item[key]{Key: keyOf(r.Uint64N(4 * capacity))}
			if r.IntN(10) > 0 {
				it.Counts = Counts{OrigBytes: r.Uint64N(1500), OrigPackets: 1, ReplyBytes: r.Uint64N(100), ReplyPackets: 1}
			}
			items = append(items, it)
			one.Add(it.Key, it.OrigBytes, it.OrigPackets, it.ReplyBytes, it.ReplyPackets)
		}
		all.AddAll(items)
		clk.now = clk.now.Add(time.Second)
		one.Advance()
		all.Advance()
	}
	got, want := all.Snapshot(capacity), one.Snapshot(capacity)
	if want.Exact || len(want.Rows) == 0 {
		t.Fatalf("the Adds stayed exact (%v) or counted nothing (%d rows): the test does not reach the evictions", want.Exact, len(want.Rows))
	}
	if !slices.Equal(got.Rows, want.Rows) || got.Tracked != want.Tracked || got.Exact != want.Exact || got.MaxError != want.MaxError {
		t.Fatalf("AddAll read %d rows (tracked %d, max error %d), the Adds %d (tracked %d, max error %d)",
			len(got.Rows), got.Tracked, got.MaxError, len(want.Rows), want.Tracked, want.MaxError)
	}
}
