package topk

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentTop runs Adds and Advances on one goroutine and Snapshots
// on two others while the clock moves, so that buckets expire while Tops
// read them (run it with -race). Every Snapshot must be sane: rows ranked,
// values within a bound of what was added.
func TestConcurrentTop(t *testing.T) {
	var now atomic.Int64
	clk := func() time.Time { return time.Unix(0, now.Load()) }
	tk, err := New(Config[key]{Capacity: 64, Window: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	const adds = 20000
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				s := tk.Snapshot(10)
				for i := 1; i < len(s.Rows); i++ {
					if s.Rows[i-1].Bytes() < s.Rows[i].Bytes() {
						t.Errorf("rows out of order: %+v", s.Rows)
						return
					}
				}
				for _, r := range s.Rows {
					// At most every Add's 100 bytes, to one key.
					if r.Bytes() > 100*adds {
						t.Errorf("row %+v over everything added", r)
						return
					}
				}
			}
		})
	}
	for i := range adds {
		tk.Add(keyOf(uint64(i%200)), 60, 1, 40, 1)
		if i%50 == 0 {
			now.Add(int64(time.Second))
			tk.Advance()
		}
	}
	close(done)
	wg.Wait()
	now.Add(int64(time.Hour))
	if s := tk.Snapshot(10); len(s.Rows) != 0 || s.Tracked != 0 {
		t.Fatalf("after an hour: %+v", s)
	}
}
