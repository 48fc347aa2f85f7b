package topk

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestIndexCollisions runs the same over-capacity stream through a TopK
// with the default hash and through TopKs whose hash gives every key one
// of a few home slots, so that probes run long, cross the end of the table
// and evictions shift slots back across it. Which keys a bucket holds and
// evicts depends on the weights alone, never on the hash: the snapshots
// must be equal, row for row, at every step of the window.
func TestIndexCollisions(t *testing.T) {
	addr := func(k key) uint32 { return binary.BigEndian.Uint32(k.addr[12:]) }
	for _, tc := range []struct {
		name string
		hash func(key) uint64
	}{
		{"five homes at the end of the table", func(k key) uint64 { return uint64(^uint32(addr(k)%5)) << 32 }},
		{"one home", func(key) uint64 { return 0x12345678 << 32 }},
		{"one home, keys told apart by the hash's other bits", func(k key) uint64 { return uint64(addr(k)&0xffff)<<48 | 7<<32 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const capacity = 64
			clk := &clock{now: time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)}
			plain, err := New(Config[key]{Capacity: capacity, Window: time.Minute, Clock: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			colliding, err := New(Config[key]{Capacity: capacity, Window: time.Minute, Clock: clk.Now, Hash: tc.hash})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for step := range 12 {
				for range 2000 {
					k := keyOf(uint64(rng.IntN(300)))
					b := uint64(1 + rng.IntN(1500))
					plain.Add(k, b, 1, b/2, 1)
					colliding.Add(k, b, 1, b/2, 1)
				}
				want, got := plain.Snapshot(40), colliding.Snapshot(40)
				if want.Exact {
					t.Fatalf("step %d: no eviction; the test needs them", step)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d: with colliding hashes\n%s\nwant\n%s", step, rowsText(got), rowsText(want))
				}
				clk.now = clk.now.Add(10 * time.Second)
				plain.Advance()
				colliding.Advance()
			}
		})
	}
}

// rowsText prints a snapshot for a failure message.
func rowsText(s Snapshot[key]) string {
	out := fmt.Sprintf("tracked %d, exact %v, max error %d\n", s.Tracked, s.Exact, s.MaxError)
	for _, r := range s.Rows {
		out += fmt.Sprintf("  %x %+v error %d\n", r.Key.addr[12:], r.Counts, r.Error)
	}
	return out
}

// TestIndexRemove empties an index slot by slot in a random order, from
// tables full to their bound with clustered homes, and checks after each
// removal that every position left is found from its home and none
// removed is.
func TestIndexRemove(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 50 {
		x := newIndex(32) // 64 slots, at most 32 in use
		hashes := make([]uint32, 32)
		for pos := range hashes {
			// Homes in the last 8 slots, so that clusters wrap.
			hashes[pos] = uint32(rng.IntN(1<<20))<<6 | uint32(56+rng.IntN(8))
			s := hashes[pos] & x.mask
			for x.slots[s] != 0 {
				s = (s + 1) & x.mask
			}
			x.set(s, hashes[pos], int32(pos))
		}
		left := map[int32]bool{}
		for pos := range hashes {
			left[int32(pos)] = true
		}
		for _, pos := range rng.Perm(len(hashes)) {
			x.remove(x.slotAt(hashes[pos], int32(pos)))
			delete(left, int32(pos))
			for p := range left {
				// slotAt probes from the home until it finds p:
				// it must not cross an empty slot first.
				found := false
				for s := hashes[p] & x.mask; x.slots[s] != 0; s = (s + 1) & x.mask {
					if x.slots[s] == slotOf(hashes[p], p) {
						found = true
						break
					}
				}
				if !found {
					t.Fatalf("round %d: position %d not reachable from its home after removing %d", round, p, pos)
				}
			}
			for s, v := range x.slots {
				if v == slotOf(hashes[pos], int32(pos)) {
					t.Fatalf("round %d: removed position %d still in slot %d", round, pos, s)
				}
			}
		}
	}
}
