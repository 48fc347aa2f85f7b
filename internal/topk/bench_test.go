package topk

import (
	"runtime"
	"testing"
	"time"
)

// filled returns a TopK of capacity keys whose every bucket is full of
// distinct keys: the most memory it can hold.
func filled(tb testing.TB, capacity int) *TopK[key] {
	clk := &clock{now: time.Unix(0, 0)}
	tk, err := New(Config[key]{Capacity: capacity, Window: time.Minute, Clock: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	next := uint64(0)
	for b := range DefaultBuckets {
		if b > 0 {
			clk.now = clk.now.Add(10 * time.Second)
			tk.Advance()
		}
		for range capacity + capacity/16 {
			tk.Add(keyOf(next), 1500, 1, 60, 1)
			next++
		}
	}
	return tk
}

// heapBytes returns the live heap after a collection.
func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryBound measures the heap of a TopK at the default capacity of
// 8192 keys, every bucket full of distinct keys and the Snapshot scratch
// grown: it must stay well under 16 MB.
func TestMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: measures the heap")
	}
	const capacity = 8192
	before := heapBytes()
	tk := filled(t, capacity)
	tk.Snapshot(100)
	used := heapBytes() - before
	runtime.KeepAlive(tk)
	perKey := float64(used) / float64(capacity*DefaultBuckets)
	t.Logf("capacity %d, %d buckets full: %.1f MB, %.0f bytes per key held (%d-byte keys)", capacity, DefaultBuckets, float64(used)/(1<<20), perKey, 17)
	if used > 8<<20 {
		t.Fatalf("%d bytes at capacity %d: over the 8 MB this test allows (16 MB is the floor; 5.8 MB measured with the index)", used, capacity)
	}
}

// BenchmarkMemoryPerKey reports the heap bytes per key held and per key of
// capacity (all buckets full) at capacity 8192.
func BenchmarkMemoryPerKey(b *testing.B) {
	const capacity = 8192
	var used uint64
	for b.Loop() {
		before := heapBytes()
		tk := filled(b, capacity)
		tk.Snapshot(100)
		used = heapBytes() - before
		runtime.KeepAlive(tk)
	}
	b.ReportMetric(float64(used)/float64(capacity*DefaultBuckets), "B/key-held")
	b.ReportMetric(float64(used)/float64(capacity), "B/key-capacity")
	b.ReportMetric(float64(used)/(1<<20), "MB-total")
}

// BenchmarkAdd measures an Add in the steady state: 4096 keys that fit the
// default capacity, already held. It must not allocate.
func BenchmarkAdd(b *testing.B) {
	tk, err := New(Config[key]{Capacity: 8192, Window: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]key, 4096)
	for i := range keys {
		keys[i] = keyOf(uint64(i) * 2654435761)
		tk.Add(keys[i], 1, 1, 1, 1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tk.Add(keys[i&4095], 1500, 1, 60, 1)
		i++
	}
}

// BenchmarkAddOverCapacity measures an Add of a Zipf workload of 100,000
// keys at capacity 8192: evictions included, amortised.
func BenchmarkAddOverCapacity(b *testing.B) {
	tk, err := New(Config[key]{Capacity: 8192, Window: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	next := zipf(1, 100_000)
	keys := make([]key, 1<<20)
	for i := range keys {
		keys[i] = keyOf(next())
	}
	for _, k := range keys {
		tk.Add(k, 1500, 1, 60, 1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tk.Add(keys[i&(1<<20-1)], 1500, 1, 60, 1)
		i++
	}
}

// BenchmarkAddScan measures an Add of a key the current bucket does not
// hold: a scan, in turn, of 65,536 keys, eight times the capacity of 8192,
// so that every Add admits a key and an eviction comes every few (a dump
// round or a DESTROY burst of more sources than the capacity). Evictions
// included, amortised. The bytes of an Add take 1024 values, 64 (as one
// packet of 29 to 92 bytes, ctburst -traffic's) or one, so that evictions
// meet few or many ties at their threshold.
func BenchmarkAddScan(b *testing.B) {
	for _, tc := range []struct {
		name  string
		bytes func(i int) uint64
	}{
		{"weights=1024", func(i int) uint64 { return 100 + uint64(i&1023) }},
		{"weights=64", func(i int) uint64 { return 29 + uint64(i%64) }},
		{"weights=1", func(int) uint64 { return 1500 }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tk, err := New(Config[key]{Capacity: 8192, Window: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			const n = 1 << 16
			keys := make([]key, n)
			for i := range keys {
				keys[i] = keyOf(uint64(i))
			}
			for i := range 2 * n {
				tk.Add(keys[i&(n-1)], tc.bytes(i), 1, 0, 0)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tk.Add(keys[i&(n-1)], tc.bytes(i), 1, 0, 0)
				i++
			}
		})
	}
}

// BenchmarkTop measures a Snapshot of the top 10 at capacity 8192 with
// every bucket of the window full of distinct keys: the worst merge.
func BenchmarkTop(b *testing.B) {
	tk := filled(b, 8192)
	b.ReportAllocs()
	for b.Loop() {
		tk.Snapshot(10)
	}
}
