package topk

import (
	"testing"
	"time"
)

// FuzzTopK runs a program of Adds, clock moves and Snapshots on a small
// TopK and checks every Snapshot against a ledger: values within their
// error, order, recall. The first byte picks the capacity (1 to 8), the
// second the buckets (1 to 8); then each op is three bytes.
func FuzzTopK(f *testing.F) {
	f.Add([]byte{2, 6, 0, 1, 100, 0, 2, 10, 0, 3, 1, 1, 9, 0, 0, 2, 50, 3, 0, 0})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 2, 2, 0, 3, 3, 3, 0, 0})
	f.Add([]byte{7, 2, 0, 9, 200, 1, 0, 250, 0, 10, 5, 2, 200, 0, 3, 0, 0, 0, 11, 7, 3, 0, 0})
	f.Add([]byte{3, 5, 0, 1, 9, 0, 2, 9, 0, 3, 9, 0, 4, 9, 0, 5, 9, 1, 1, 30, 0, 1, 1, 3, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) < 2 {
			return
		}
		h := newHarness(t, int(prog[0]%8)+1, time.Minute, int(prog[1]%8)+1)
		prog = prog[2:]
		for len(prog) >= 3 {
			op, a, b := prog[0], prog[1], prog[2]
			prog = prog[3:]
			switch op % 4 {
			case 0: // Add: key a%16, b bytes split over the directions.
				h.add(keyOf(uint64(a%16)), uint64(b)*3, uint64(b%3), uint64(b)*uint64(a%5), 1)
			case 1: // Move the clock by a seconds.
				h.advance(time.Duration(a) * time.Second)
			case 2: // Move the clock without Advance: Snapshot must move the window.
				h.clk.now = h.clk.now.Add(time.Duration(a) * time.Second)
				h.check(int(b%10), false)
			case 3:
				h.check(int(a%10)+1, false)
			}
		}
		h.check(16, false)
	})
}
