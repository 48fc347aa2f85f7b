package flow

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTableAgainstMap runs random insertions, updates and sweeps on a table
// and on a Go map side by side: they must always hold the same records, and
// every record must be found from its home slot.
func TestTableAgainstMap(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		r := rand.New(rand.NewPCG(seed, seed))
		tb := newTable[key4]()
		model := map[key4]record{}
		// Few distinct ids and starts: many collisions of the hash.
		key := func() key4 {
			return key4{src: [4]byte{10, 0, 0, byte(r.IntN(4))}, keyTail: keyTail{id: uint32(r.IntN(3000)), start: int64(r.IntN(2)), sport: uint16(r.IntN(50))}}
		}
		for round := range 40 {
			for range r.IntN(3000) {
				k := key()
				rec, added := tb.put(&k)
				if _, ok := model[k]; ok == added {
					t.Fatalf("seed %d round %d: put(%v) added=%v, model has it: %v", seed, round, k, added, ok)
				}
				rec.counts[0]++
				rec.mark = uint32(r.IntN(1 << 20))
				model[k] = *rec
			}
			// Sweep away about a third, at random.
			drop := map[key4]bool{}
			for k := range model {
				if r.IntN(3) == 0 {
					drop[k] = true
				}
			}
			seen := map[key4]int{}
			tb.sweep(func(k *key4, rec *record) bool {
				seen[*k]++
				if *rec != model[*k] {
					t.Fatalf("seed %d round %d: sweep sees %v = %+v, model %+v", seed, round, *k, *rec, model[*k])
				}
				return !drop[*k]
			}, round%2 == 0)
			for k := range model {
				if seen[k] != 1 {
					t.Fatalf("seed %d round %d: sweep saw %v %d times", seed, round, k, seen[k])
				}
				if drop[k] {
					delete(model, k)
				}
			}
			if tb.n != len(model) {
				t.Fatalf("seed %d round %d: table holds %d, model %d", seed, round, tb.n, len(model))
			}
			for k, want := range model {
				got := tb.get(&k)
				if got == nil || *got != want {
					t.Fatalf("seed %d round %d: get(%v) = %v, want %+v", seed, round, k, got, want)
				}
			}
		}
		tb.free()
	}
}

func TestTableProbeLength(t *testing.T) {
	tb := newTable[key4]()
	defer tb.free()
	const n = 1 << 18
	for i := 0; i < n; i++ {
		k := key4{keyTail: keyTail{id: uint32(i) * 2654435761, start: 1, sport: uint16(i)}}
		tb.put(&k)
	}
	total := 0
	for i, v := range tb.index {
		if v == 0 {
			continue
		}
		d := i - tb.home(&tb.recs[tb.posOf(v)].key)
		if d < 0 {
			d += len(tb.index)
		}
		total += d
	}
	load := float64(tb.n) / float64(len(tb.index))
	mean := float64(total) / float64(tb.n)
	// Linear probing at load a displaces an entry by (1/(1-a)-1)/2 on
	// average: 0.75 at the most load, 0.6.
	if load > indexLoad || mean > 1 {
		t.Errorf("load %.2f, mean displacement %.2f: want at most %.2f and 1", load, mean, indexLoad)
	}
	if per := float64(tb.bytes()) / n; per > 128 {
		t.Errorf("%.0f bytes per flow, want at most 128", per)
	}
}

// TestTableDumpOrder checks that a dump listing the flows in the order of
// the previous one finds every flow where it expects it, and that a dump in
// another order makes the table follow that order.
func TestTableDumpOrder(t *testing.T) {
	tb := newTable[key4]()
	defer tb.free()
	keys := make([]key4, 5000)
	for i := range keys {
		keys[i] = key4{keyTail: keyTail{id: uint32(i + 1), sport: uint16(i)}}
	}
	dump := func(ks []key4) int {
		tb.beginDump()
		for i := range ks {
			if tb.next(&ks[i]) == nil {
				tb.put(&ks[i])
			}
		}
		misplaced := tb.misplaced
		tb.sweep(func(*key4, *record) bool { return true }, true)
		return misplaced
	}
	if m := dump(keys); m != 0 {
		t.Errorf("baseline: %d misplaced, want 0", m)
	}
	if m := dump(keys); m != 0 {
		t.Errorf("same order: %d misplaced, want 0", m)
	}
	r := rand.New(rand.NewPCG(1, 1))
	shuffled := slices.Clone(keys)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if m := dump(shuffled); m < len(keys)/2 {
		t.Errorf("shuffled: %d misplaced, want most", m)
	}
	if m := dump(shuffled); m != 0 {
		t.Errorf("shuffled again, after the table followed: %d misplaced, want 0", m)
	}
	// A few flows come and go: only they are out of place.
	churned := slices.Clone(shuffled)
	for i := 0; i < len(churned); i += 500 {
		churned[i] = key4{keyTail: keyTail{id: uint32(100000 + i)}}
	}
	if m := dump(churned); m > 2*10 {
		t.Errorf("10 new flows: %d misplaced, want at most 20", m)
	}
	for i := range keys {
		if tb.get(&keys[i]) == nil {
			t.Fatalf("flow %d lost", i)
		}
	}
}

func TestTableShrinks(t *testing.T) {
	tb := newTable[key4]()
	defer tb.free()
	for i := range 100000 {
		k := key4{keyTail: keyTail{id: uint32(i + 1)}}
		tb.put(&k)
	}
	full := tb.bytes()
	keep := 0
	tb.sweep(func(k *key4, _ *record) bool {
		keep++
		return keep <= 1000
	}, false)
	if tb.n != 1000 || tb.bytes() > full/20 {
		t.Errorf("%d records in %d bytes (was %d): want 1000 in far less", tb.n, tb.bytes(), full)
	}
	for i := range 1000 {
		k := tb.recs[i].key
		if tb.get(&k) == nil {
			t.Fatalf("record %d lost", i)
		}
	}
}
