package graphite

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// lineN is the n-th test line, "lN\n".
func lineN(n int) string { return fmt.Sprintf("l%d\n", n) }

// span returns the test lines from..to.
func span(from, to int) []string {
	var ls []string
	for i := from; i <= to; i++ {
		ls = append(ls, lineN(i))
	}
	return ls
}

// pushLines queues ls as one snapshot and reports whether push found it too
// big for the backlog.
func pushLines(q *queue, ls ...string) bool {
	b := q.newBatch()
	for _, l := range ls {
		b.add([]byte(l))
	}
	return b.push()
}

// conn is the sender's side of a test connection: it takes the queue's
// chunks, keeps what it wrote, and acknowledges bytes on demand.
type conn struct {
	q              *queue
	wrote          []byte
	written, acked int
}

// writeAll takes every chunk not yet taken.
func (c *conn) writeAll() {
	for d := c.q.take(); d != nil; d = c.q.take() {
		c.wrote = append(c.wrote, d...)
		c.written += len(d)
	}
}

// ackUpTo acknowledges the written bytes up to n.
func (c *conn) ackUpTo(n int, now time.Time) {
	n = min(n, c.written)
	if n > c.acked {
		c.q.ack(n-c.acked, now)
		c.acked = n
	}
}

// fail ends the connection as when carbon resets it: what was not
// acknowledged, and the resend window before it, will be written again.
func (c *conn) fail(now time.Time) {
	c.q.rewind(now)
	c.q.replay(now)
}

func splitLines(b []byte) []string {
	var ls []string
	for l := range strings.Lines(string(b)) {
		ls = append(ls, l)
	}
	return ls
}

// deliver writes and acknowledges everything, as a healthy carbon would,
// and returns the lines written.
func deliver(q *queue, now time.Time) []string {
	c := &conn{q: q}
	c.writeAll()
	c.ackUpTo(c.written, now)
	return splitLines(c.wrote)
}

func TestQueueBacklogLimits(t *testing.T) {
	tests := []struct {
		name        string
		points      int
		bytes       int
		push        [][]string
		want        []string
		wantDropped uint64
		wantTooBig  bool
	}{
		{"under limit", 10, 0, [][]string{span(1, 5)}, span(1, 5), 0, false},
		{"points limit keeps newest", 3, 0, [][]string{span(1, 2), span(3, 5)}, span(3, 5), 2, false},
		{"bytes limit keeps newest", 0, 9, [][]string{span(1, 3), span(4, 5)}, span(3, 5), 2, false}, // "lN\n" is 3 bytes
		{"both limits, bytes tighter", 10, 6, [][]string{span(1, 2), span(3, 5)}, span(4, 5), 3, true},
		{"snapshot larger than the backlog", 3, 0, [][]string{span(1, 5)}, span(3, 5), 2, true},
		{"line longer than byte limit", 0, 2, [][]string{{"toolong\n"}}, nil, 1, true},
		{"many snapshots", 100, 0, func() (p [][]string) {
			for i := 0; i < 1000; i += 10 {
				p = append(p, span(i+1, i+10))
			}
			return p
		}(), span(901, 1000), 900, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(tt.points, tt.bytes, 0, 0)
			defer q.release()
			tooBig := false
			for _, p := range tt.push {
				tooBig = pushLines(q, p...) || tooBig
			}
			if tooBig != tt.wantTooBig {
				t.Errorf("push reported a snapshot too big: %v, want %v", tooBig, tt.wantTooBig)
			}
			got := deliver(q, time.Now())
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
			st := q.stats()
			if st.dropped != tt.wantDropped || st.sent != uint64(len(tt.want)) || st.backlogLines != 0 || st.backlogBytes != 0 {
				t.Errorf("stats = %+v, want dropped %d, sent %d, nothing left", st, tt.wantDropped, len(tt.want))
			}
		})
	}
}

func TestQueueInFlightIsNeverDropped(t *testing.T) {
	q := newQueue(4, 0, 0, 0)
	defer q.release()
	pushLines(q, span(1, 4)...)
	c := &conn{q: q}
	c.writeAll() // l1..l4 in flight
	// Over the limit while l1..l4 are in flight: only queued lines can go.
	pushLines(q, span(5, 7)...)
	if st := q.stats(); st.dropped != 3 || st.backlogLines != 4 {
		t.Fatalf("stats with 4 lines in flight = %+v, want the 3 new ones dropped", st)
	}
	c.ackUpTo(6, time.Now()) // l1, l2
	if st := q.stats(); st.sent != 2 || st.backlogLines != 2 || st.backlogBytes != 6 {
		t.Fatalf("stats after 2 acknowledged = %+v, want 2 sent and 2 left", st)
	}
	pushLines(q, span(8, 10)...) // room for 2 of them
	c.writeAll()
	c.ackUpTo(c.written, time.Now())
	if got, want := splitLines(c.wrote), append(span(1, 4), span(9, 10)...); !slices.Equal(got, want) {
		t.Errorf("written %q, want %q", got, want)
	}
	if st := q.stats(); st.sent+st.dropped != 10 || st.sent != 6 || st.backlogLines != 0 {
		t.Errorf("final stats = %+v, want every line sent or dropped once", st)
	}
}

func TestQueueCountsOnlyAcknowledged(t *testing.T) {
	q := newQueue(100, 0, 0, 0)
	defer q.release()
	pushLines(q, "a\n", "bb\n", "ccc\n")
	c := &conn{q: q}
	c.writeAll()
	now := time.Now()
	for _, step := range []struct {
		acked, sent, backlogLines, backlogBytes int
	}{
		{0, 0, 3, 9},
		{1, 0, 3, 8}, // "a" without its newline
		{2, 1, 2, 7},
		{4, 1, 2, 5},
		{9, 3, 0, 0},
	} {
		c.ackUpTo(step.acked, now)
		st := q.stats()
		if st.sent != uint64(step.sent) || st.backlogLines != step.backlogLines || st.backlogBytes != step.backlogBytes {
			t.Errorf("after %d bytes acknowledged: stats = %+v, want %d sent, %d lines and %d bytes left",
				step.acked, st, step.sent, step.backlogLines, step.backlogBytes)
		}
	}
}

// TestQueueRewind checks what is written again after a failed connection,
// with and without a resend window.
func TestQueueRewind(t *testing.T) {
	tests := []struct {
		name        string
		windowBytes int
		// want is what the next connection writes: the window, then what
		// was not acknowledged, from the start of its first line.
		want                   []string
		wantSent, wantResent   uint64
		wantWindow, wantResend int // lines in the window after the replay
	}{
		{"window", 1 << 20, span(1, 6), 6, 3, 6, 0},
		{"no window", 0, span(4, 6), 6, 0, 0, 0},
		{"window smaller than what was acknowledged", 6, span(2, 6), 6, 2, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			q := newQueue(100, 0, tt.windowBytes, time.Minute)
			defer q.release()
			pushLines(q, span(1, 3)...)
			c := &conn{q: q}
			c.writeAll()
			pushLines(q, span(4, 6)...)
			c.writeAll()
			c.ackUpTo(3*3+1, now) // l1..l3 and the first byte of l4
			if st := q.stats(); st.sent != 3 {
				t.Fatalf("sent = %d, want 3", st.sent)
			}
			c.fail(now)
			if st := q.stats(); st.backlogLines != 3 || st.backlogBytes != 9 {
				t.Fatalf("backlog after the failure = %+v, want l4..l6 owed again", st)
			}

			c2 := &conn{q: q}
			c2.writeAll()
			if got := splitLines(c2.wrote); !slices.Equal(got, tt.want) {
				t.Fatalf("next connection writes %q, want %q", got, tt.want)
			}
			c2.ackUpTo(c2.written, now)
			st := q.stats()
			if st.sent != tt.wantSent || st.resent != tt.wantResent || st.backlogLines != 0 || st.dropped != 0 {
				t.Errorf("stats = %+v, want %d sent once, %d resent, nothing left or dropped", st, tt.wantSent, tt.wantResent)
			}
			if st.windowLines != tt.wantWindow {
				t.Errorf("window holds %d lines, want %d", st.windowLines, tt.wantWindow)
			}
		})
	}
}

// TestQueueRewindTwice checks a failure during the replay: the window and
// what was not acknowledged are written again, in order, and what was
// acknowledged on no connection is never lost.
func TestQueueRewindTwice(t *testing.T) {
	now := time.Now()
	q := newQueue(100, 0, 1<<20, time.Minute)
	defer q.release()
	pushLines(q, span(1, 4)...)
	deliver(q, now) // l1..l4 acknowledged: in the window
	pushLines(q, span(5, 6)...)
	c := &conn{q: q}
	c.writeAll()
	c.ackUpTo(3, now) // l5
	c.fail(now)       // window: l1..l5; owed: l6

	c2 := &conn{q: q}
	c2.writeAll()
	if got := splitLines(c2.wrote); !slices.Equal(got, span(1, 6)) {
		t.Fatalf("first replay writes %q", got)
	}
	c2.ackUpTo(6, now) // l1, l2 again
	pushLines(q, span(7, 7)...)
	c2.fail(now)

	c3 := &conn{q: q}
	c3.writeAll()
	if got := splitLines(c3.wrote); !slices.Equal(got, span(1, 7)) {
		t.Fatalf("second replay writes %q, want l1..l7", got)
	}
	c3.ackUpTo(c3.written, now)
	st := q.stats()
	if st.sent != 7 || st.resent != 2+5 || st.backlogLines != 0 || st.windowLines != 7 {
		t.Errorf("stats = %+v, want 7 sent, 7 resent (2 then 5), window of 7", st)
	}
}

// TestQueueRewindWithoutReplay checks a connection that failed while carbon
// stays up: only what was not acknowledged is written again, and the window
// is kept for a later replay.
func TestQueueRewindWithoutReplay(t *testing.T) {
	now := time.Now()
	q := newQueue(100, 0, 1<<20, time.Minute)
	defer q.release()
	pushLines(q, span(1, 4)...)
	c := &conn{q: q}
	c.writeAll()
	c.ackUpTo(7, now) // l1, l2 and a byte of l3
	q.rewind(now)
	c2 := &conn{q: q}
	c2.writeAll()
	if got := splitLines(c2.wrote); !slices.Equal(got, span(3, 4)) {
		t.Fatalf("next connection writes %q, want l3, l4", got)
	}
	c2.ackUpTo(c2.written, now)
	if st := q.stats(); st.sent != 4 || st.resent != 0 || st.windowLines != 4 {
		t.Errorf("stats = %+v, want 4 sent once, none resent, 4 in the window", st)
	}
	q.replay(now)
	c3 := &conn{q: q}
	c3.writeAll()
	if got := splitLines(c3.wrote); !slices.Equal(got, span(1, 4)) {
		t.Errorf("a later replay writes %q, want l1..l4", got)
	}
}

func TestQueueWindowExpires(t *testing.T) {
	start := time.Now()
	q := newQueue(100, 0, 1<<20, time.Minute)
	defer q.release()
	pushLines(q, span(1, 2)...)
	deliver(q, start)
	pushLines(q, span(3, 4)...)
	// Acknowledged, l3 and l4 join l1 and l2 in one chunk of the window,
	// kept as long as its newest line.
	deliver(q, start.Add(30*time.Second))
	if st := q.stats(); st.windowLines != 4 {
		t.Fatalf("window = %d lines, want 4", st.windowLines)
	}
	// The whole chunk is kept while its newest line is recent.
	q.replay(start.Add(80 * time.Second))
	c := &conn{q: q}
	c.writeAll()
	if got := splitLines(c.wrote); !slices.Equal(got, span(1, 4)) {
		t.Errorf("replay after 80s writes %q, want l1..l4 (their chunk holds lines 50s old)", got)
	}
	c.ackUpTo(c.written, start.Add(80*time.Second))
	q.replay(start.Add(141 * time.Second))
	c2 := &conn{q: q}
	c2.writeAll()
	if len(c2.wrote) != 0 {
		t.Errorf("replay after the window ended writes %q, want nothing", c2.wrote)
	}
	if st := q.stats(); st.windowLines != 0 || st.windowBytes != 0 {
		t.Errorf("stats = %+v, want an empty window", st)
	}
}

func TestQueuePacksSmallPushes(t *testing.T) {
	q := newQueue(1_000_000, 0, 1<<30, time.Hour)
	defer q.release()
	const pushes = 1000
	for i := range pushes {
		pushLines(q, span(10*i+1, 10*i+10)...) // while carbon is away
	}
	if n := q.pending.len(); n != 1 {
		t.Errorf("%d pushes of 10 lines take %d chunks, want 1", pushes, n)
	}
	now := time.Now()
	for i := range pushes {
		pushLines(q, span(10*(pushes+i)+1, 10*(pushes+i)+10)...)
		deliver(q, now) // one push at a time, as on a healthy link
	}
	if n := q.window.len(); n != 1 {
		t.Errorf("the window holds %d chunks for 2000 small pushes, want 1", n)
	}
	if st := q.stats(); st.sent != 2*pushes*10 || st.windowLines != 2*pushes*10 {
		t.Errorf("stats = %+v", st)
	}
}

// TestQueueWindowCompressed checks that the window keeps full chunks
// compressed, counts the memory they take, and writes the very same lines
// again after a failure.
func TestQueueWindowCompressed(t *testing.T) {
	now := time.Now()
	q := newQueue(0, 1<<30, 1<<30, time.Hour)
	defer q.release()
	var want []string
	for i := range 40_000 { // about 1.3 MB: several chunks
		want = append(want, fmt.Sprintf("netfilter.conntrack.ipv4.udp.198_18_%d.%d.orig.bytes %d 1700000000\n", i/256, i%256, i*1000))
	}
	raw := len(strings.Join(want, ""))
	for i := 0; i < len(want); i += 1000 {
		pushLines(q, want[i:i+1000]...)
		deliver(q, now)
	}
	st := q.stats()
	if st.windowLines != len(want) || st.windowBytes*4 > raw {
		t.Fatalf("window holds %d lines in %d bytes, want %d lines in less than a quarter of %d", st.windowLines, st.windowBytes, len(want), raw)
	}
	compressed := 0
	for i := range q.window.len() {
		if q.window.at(i).z != nil {
			compressed++
		}
	}
	if compressed < 3 || compressed != q.window.len()-1 {
		t.Errorf("%d of %d window chunks compressed, want all but the newest", compressed, q.window.len())
	}
	c := &conn{q: q}
	c.fail(now)
	c.writeAll()
	if got := splitLines(c.wrote); !slices.Equal(got, want) {
		t.Fatalf("the replay writes %d lines, want the %d kept, the same", len(got), len(want))
	}
	c.ackUpTo(c.written, now)
	if st := q.stats(); st.resent != uint64(len(want)) || st.windowLines != len(want) || st.backlogLines != 0 {
		t.Errorf("stats after the replay = %+v", st)
	}

	// A window limit below what is kept forgets the oldest chunks whole.
	q.windowBytes = q.stats().windowBytes / 2
	q.mu.Lock()
	q.enforceWindow()
	q.mu.Unlock()
	if st := q.stats(); st.windowBytes > q.windowBytes || st.windowLines == 0 || st.windowLines >= len(want) {
		t.Errorf("after halving the limit: %+v, limit %d", st, q.windowBytes)
	}
}

func TestQueueBigLines(t *testing.T) {
	q := newQueue(0, 1<<30, 1<<30, time.Hour)
	defer q.release()
	big := strings.Repeat("x", chunkSize+10) + "\n"
	pushLines(q, "a\n", big, "b\n")
	if got := deliver(q, time.Now()); !slices.Equal(got, []string{"a\n", big, "b\n"}) {
		t.Errorf("lines differ (%d of them)", len(got))
	}
}

func TestChunkList(t *testing.T) {
	var l chunkList
	mk := func(n int) *chunk { return &chunk{lines: n} }
	for i := range 200 {
		l.pushBack(mk(i))
	}
	for i := range 150 {
		if c := l.popFront(); c.lines != i {
			t.Fatalf("popFront = %d, want %d", c.lines, i)
		}
	}
	l.remove(1) // 151
	var o chunkList
	o.pushBack(mk(-2))
	o.pushBack(mk(-1))
	l.prepend(&o)
	var got []int
	for l.len() > 0 {
		got = append(got, l.popFront().lines)
	}
	want := []int{-2, -1, 150}
	for i := 152; i < 200; i++ {
		want = append(want, i)
	}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	if o.len() != 0 || l.front() != nil || l.back() != nil {
		t.Error("lists not empty")
	}
}
