package graphite

import (
	"fmt"
	"slices"
	"testing"
)

func lines(from, to int) []string {
	var ls []string
	for i := from; i <= to; i++ {
		ls = append(ls, fmt.Sprintf("l%d\n", i))
	}
	return ls
}

// drain takes and commits everything queued, returning the lines in order.
func drain(b *backlog) []string {
	var out []string
	for {
		batch := b.take(nil, 1<<20)
		if len(batch) == 0 {
			return out
		}
		out = append(out, batch...)
		b.commit(batch)
	}
}

func TestBacklogLimits(t *testing.T) {
	tests := []struct {
		name        string
		points      int
		bytes       int
		push        []string
		want        []string
		wantDropped uint64
	}{
		{"under limit", 10, 0, lines(1, 5), lines(1, 5), 0},
		{"points limit keeps newest", 3, 0, lines(1, 5), lines(3, 5), 2},
		{"bytes limit keeps newest", 0, 9, lines(1, 5), lines(3, 5), 2}, // "lN\n" is 3 bytes
		{"both limits, bytes tighter", 10, 6, lines(1, 5), lines(4, 5), 3},
		{"line longer than byte limit", 0, 2, []string{"toolong\n"}, nil, 1},
		{"many wraps", 100, 0, lines(1, 1000), lines(901, 1000), 900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBacklog(tt.points, tt.bytes)
			for _, l := range tt.push {
				b.push([]string{l})
			}
			got := drain(b)
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
			st := b.stats()
			if st.dropped != tt.wantDropped || st.sent != uint64(len(tt.want)) || st.points != 0 || st.bytes != 0 {
				t.Errorf("stats = %+v, want dropped %d, sent %d, nothing left", st, tt.wantDropped, len(tt.want))
			}
		})
	}
}

func TestBacklogInFlight(t *testing.T) {
	b := newBacklog(4, 0)
	b.push(lines(1, 4))

	batch := b.take(nil, 6) // two 3-byte lines
	if !slices.Equal(batch, lines(1, 2)) {
		t.Fatalf("batch = %q", batch)
	}
	// While l1 and l2 are in flight, pushing more drops queued lines only.
	b.push(lines(5, 7))
	if st := b.stats(); st.dropped != 1 || st.points != 6 || st.bytes != 18 {
		t.Fatalf("stats while in flight = %+v, want 1 dropped and 6 points", st)
	}
	// The write fails: the batch goes back in front, and the oldest lines,
	// those of the batch, are dropped to honour the limit.
	b.giveBack(batch)
	if st := b.stats(); st.dropped != 3 || st.points != 4 || st.sent != 0 {
		t.Fatalf("stats after giveBack = %+v, want 3 dropped and 4 points", st)
	}
	batch = b.take(nil, 3)
	if !slices.Equal(batch, lines(4, 4)) {
		t.Fatalf("batch = %q, want l4", batch)
	}
	b.giveBack(batch)
	batch = b.take(nil, 100)
	b.commit(batch)
	if !slices.Equal(batch, lines(4, 7)) {
		t.Fatalf("batch = %q, want l4..l7", batch)
	}
	st := b.stats()
	if st.sent+st.dropped != 7 || st.sent != 4 || st.points != 0 || st.bytes != 0 {
		t.Fatalf("final stats = %+v, want every line sent or dropped once", st)
	}
}

func TestBacklogTakeAtLeastOneLine(t *testing.T) {
	b := newBacklog(10, 0)
	b.push([]string{"a long line\n", "x\n"})
	if batch := b.take(nil, 1); !slices.Equal(batch, []string{"a long line\n"}) {
		t.Fatalf("batch = %q", batch)
	}
}

func TestBacklogGrowsAndShrinks(t *testing.T) {
	b := newBacklog(1_000_000, 0)
	b.push(lines(1, 10_000))
	if len(b.ring) < 10_000 {
		t.Fatalf("ring has %d slots for 10000 lines", len(b.ring))
	}
	got := drain(b)
	if !slices.Equal(got, lines(1, 10_000)) {
		t.Fatal("lines out of order after growth")
	}
	if len(b.ring) > 4*minRing {
		t.Errorf("ring still has %d slots once empty", len(b.ring))
	}
}
