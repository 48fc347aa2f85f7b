package graphite

import (
	"bytes"
	"sync"
	"time"
)

// queue holds the lines of the Graphite feed from the moment a snapshot is
// formatted until carbon's kernel has acknowledged them, and then, as the
// resend window, a while longer.
//
// Lines live in chunks (see chunk). pending holds the chunks not yet
// acknowledged, oldest first: the backlog. The sender writes them in order;
// the first taken chunks have been written, in full or in part, on the
// current connection. Acknowledged chunks move to window, where they stay
// for windowAge and within windowBytes. When a connection fails, every
// pending line is written again on the next connection, in the original
// order (rewind); when carbon may have lost what it acknowledged, the lines
// of the window are first put back in front of pending, marked as resends
// (replay).
//
// The backlog limits apply to the lines carbon has not acknowledged yet,
// resends aside: when a push exceeds them, the oldest lines not in flight
// are dropped and counted. The lines of the window, and the resends, are
// bounded by windowBytes of memory instead, their full chunks compressed
// (see compressor) until the sender takes them again; when it is exceeded
// the oldest are forgotten without being counted as dropped, as carbon had
// them once.
type queue struct {
	maxPoints   int           // backlog limit in lines; 0: none
	maxBytes    int           // backlog limit in bytes; 0: none
	windowBytes int           // resend window limit in bytes of memory; 0: no window
	windowAge   time.Duration // how long acknowledged lines are kept; 0: no window

	// ready holds a token when lines were pushed since the sender last
	// looked; it wakes the sender without ever blocking the pusher.
	ready chan struct{}

	mu      sync.Mutex
	pool    chunkPool
	z       compressor
	pending chunkList
	window  chunkList
	// taken is how many chunks at the front of pending the sender has taken
	// on the current connection; none of them may be changed or dropped.
	taken int
	// frontAcked is how many bytes of the first pending chunk carbon's
	// kernel has acknowledged on the current connection.
	frontAcked int

	backlogLines, backlogBytes int // fresh lines in pending, not acknowledged
	resendLines, resendBytes   int // resends in pending, not acknowledged; bytes stored
	windowLines, windowSize    int // lines in window; bytes stored
	sent, resent, dropped      uint64
}

func newQueue(maxPoints, maxBytes, windowBytes int, windowAge time.Duration) *queue {
	if windowBytes <= 0 || windowAge <= 0 {
		windowBytes, windowAge = 0, 0
	}
	return &queue{
		maxPoints:   maxPoints,
		maxBytes:    maxBytes,
		windowBytes: windowBytes,
		windowAge:   windowAge,
		ready:       make(chan struct{}, 1),
	}
}

// batch is the lines of one snapshot, formatted into chunks. Every chunk
// filled is queued at once, so that the sender writes a large snapshot while
// the rest is formatted and it never waits in memory whole; the last chunk
// is queued by push. It is used by one goroutine.
type batch struct {
	q     *queue
	cur   *chunk // the chunk being filled, not queued yet
	lines int
	bytes int
}

// newBatch returns an empty batch for q.
func (q *queue) newBatch() *batch { return &batch{q: q} }

// add appends one line, which must end with '\n', to b.
func (b *batch) add(line []byte) {
	if b.cur == nil || b.cur.room() < len(line) {
		q := b.q
		q.mu.Lock()
		if b.cur != nil {
			q.enqueue(b.cur)
		}
		b.cur = q.pool.get(len(line))
		q.mu.Unlock()
		q.wake()
	}
	b.cur.add(line, 1)
	b.lines++
	b.bytes += len(line)
}

// push queues the rest of b, and reports whether b was larger than the
// backlog limits, which then dropped some of its lines even if carbon keeps
// up. b must not be used afterwards.
func (b *batch) push() (tooBig bool) {
	q := b.q
	q.mu.Lock()
	if b.cur != nil {
		q.enqueue(b.cur)
		b.cur = nil
	}
	q.expire(time.Now())
	q.mu.Unlock()
	q.wake()
	return (q.maxPoints > 0 && b.lines > q.maxPoints) || (q.maxBytes > 0 && b.bytes > q.maxBytes)
}

// enqueue appends the lines of c to the backlog and drops the oldest lines
// beyond the limits. Small chunks, while the sender has not taken the last
// one, share it.
func (q *queue) enqueue(c *chunk) {
	if c.lines == 0 {
		q.pool.put(c)
		return
	}
	q.backlogLines += c.lines
	q.backlogBytes += c.size()
	if t := q.pending.back(); t != nil && !t.sealed && !t.resend && t.room() >= c.size() {
		t.add(c.data(), c.lines)
		q.pool.put(c)
	} else {
		q.pending.pushBack(c)
	}
	q.enforceBacklog()
}

// wake wakes the sender without ever waiting for it.
func (q *queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// enforceBacklog drops the oldest fresh lines that are not in flight while a
// backlog limit is exceeded.
func (q *queue) enforceBacklog() {
	for {
		overLines, overBytes := 0, 0
		if q.maxPoints > 0 {
			overLines = q.backlogLines - q.maxPoints
		}
		if q.maxBytes > 0 {
			overBytes = q.backlogBytes - q.maxBytes
		}
		if overLines <= 0 && overBytes <= 0 {
			return
		}
		i := q.taken
		for i < q.pending.len() && q.pending.at(i).resend {
			i++
		}
		if i == q.pending.len() {
			return // only lines in flight are over the limits
		}
		c := q.pending.at(i)
		lines, size := c.dropLines(overLines, overBytes)
		q.backlogLines -= lines
		q.backlogBytes -= size
		q.dropped += uint64(lines)
		if c.lines == 0 {
			q.pending.remove(i)
			q.pool.put(c)
		}
	}
}

// take returns the lines of the next chunk to write and marks it taken. It
// returns nil when every pending chunk has been taken. The lines stay valid
// and unchanged until the connection fails or they are acknowledged.
func (q *queue) take() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.taken == q.pending.len() {
		return nil
	}
	c := q.pending.at(q.taken)
	if c.z != nil {
		q.resendBytes += q.z.restore(c, &q.pool)
	}
	c.sealed = true
	q.taken++
	return c.data()
}

// ack records that carbon's kernel acknowledged n more bytes of the current
// connection. Lines count as sent, or resent, once their last byte is
// acknowledged; chunks acknowledged in full move to the resend window.
func (q *queue) ack(n int, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for n > 0 && q.taken > 0 {
		c := q.pending.front()
		k := min(n, c.size()-q.frontAcked)
		lines := bytes.Count(c.data()[q.frontAcked:q.frontAcked+k], []byte{'\n'})
		if c.resend {
			q.resendLines -= lines
			q.resendBytes -= k
			q.resent += uint64(lines)
		} else {
			q.backlogLines -= lines
			q.backlogBytes -= k
			q.sent += uint64(lines)
		}
		q.frontAcked += k
		n -= k
		if q.frontAcked < c.size() {
			break
		}
		q.pending.popFront()
		q.taken--
		q.frontAcked = 0
		q.toWindow(c, now)
	}
	q.expire(now)
}

// toWindow keeps the acknowledged chunk c in the resend window, or frees it
// when there is no window. Small chunks are copied into the newest chunk of
// the window, so that the window stays dense; the others, once the next one
// comes, are compressed.
func (q *queue) toWindow(c *chunk, now time.Time) {
	if q.windowBytes == 0 {
		q.pool.put(c)
		return
	}
	q.windowLines += c.lines
	q.windowSize += c.size()
	t := q.window.back()
	if t != nil && t.z == nil && t.room() >= c.size() {
		t.add(c.data(), c.lines)
		t.at = now
		q.pool.put(c)
	} else {
		if t != nil && t.z == nil {
			q.windowSize -= q.z.compress(t, &q.pool)
		}
		c.resend, c.sealed, c.at = false, true, now
		q.window.pushBack(c)
	}
	q.enforceWindow()
}

// expire forgets the lines of the window acknowledged more than windowAge
// ago.
func (q *queue) expire(now time.Time) {
	for c := q.window.front(); c != nil && now.Sub(c.at) > q.windowAge; c = q.window.front() {
		q.window.popFront()
		q.windowLines -= c.lines
		q.windowSize -= c.stored()
		q.pool.put(c)
	}
}

// trim removes lines from the front of c, kept for resending, until at least
// over bytes of memory are freed, and returns the lines and memory freed. A
// compressed chunk goes whole.
func trim(c *chunk, over int) (lines, stored int) {
	if c.z != nil {
		lines, stored = c.lines, c.stored()
		c.lines = 0
		return lines, stored
	}
	return c.dropLines(0, over)
}

// enforceWindow forgets the oldest lines kept for resending, in the window
// or queued as resends but not in flight, while they take more than
// windowBytes.
func (q *queue) enforceWindow() {
	for over := q.windowSize + q.resendBytes - q.windowBytes; over > 0; over = q.windowSize + q.resendBytes - q.windowBytes {
		if c := q.window.front(); c != nil {
			lines, size := trim(c, over)
			q.windowLines -= lines
			q.windowSize -= size
			if c.lines == 0 {
				q.window.popFront()
				q.pool.put(c)
			}
			continue
		}
		if q.taken == q.pending.len() || !q.pending.at(q.taken).resend {
			return // only resends in flight are over the limit
		}
		c := q.pending.at(q.taken)
		lines, size := trim(c, over)
		q.resendLines -= lines
		q.resendBytes -= size
		if c.lines == 0 {
			q.pending.remove(q.taken)
			q.pool.put(c)
		}
	}
}

// rewind is called when the connection has failed, after the last ack: the
// lines not acknowledged will be written again from the start, on the next
// connection. The complete lines acknowledged join the resend window.
func (q *queue) rewind(now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	if q.frontAcked > 0 {
		// The complete lines acknowledged in the first chunk were taken by
		// carbon: they go to the window. The bytes of a line acknowledged
		// in part are owed again.
		c := q.pending.front()
		acked := c.data()[:q.frontAcked]
		end := bytes.LastIndexByte(acked, '\n') + 1
		if c.resend {
			q.resendBytes += q.frontAcked - end
		} else {
			q.backlogBytes += q.frontAcked - end
		}
		if end > 0 {
			lines := bytes.Count(acked[:end], []byte{'\n'})
			if q.windowBytes > 0 {
				w := q.window.back()
				if w == nil || w.z != nil || w.room() < end {
					w = q.pool.get(end)
					w.sealed = true
					q.window.pushBack(w)
				}
				w.add(acked[:end], lines)
				w.at = now
				q.windowLines += lines
				q.windowSize += end
				q.enforceWindow()
			}
			c.off += end
			c.lines -= lines
		}
		q.frontAcked = 0
	}
	q.taken = 0
}

// replay queues the lines of the resend window in front of every pending
// line, to be written again on the next connection: carbon may have lost
// them. It is called between connections.
func (q *queue) replay(now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	if q.window.len() == 0 {
		return
	}
	for i := range q.window.len() {
		c := q.window.at(i)
		c.resend, c.sealed = true, true
	}
	q.resendLines += q.windowLines
	q.resendBytes += q.windowSize
	q.windowLines, q.windowSize = 0, 0
	q.pending.prepend(&q.window)
	q.enforceWindow()
}

// empty reports whether every line has been acknowledged (or dropped).
func (q *queue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending.len() == 0
}

// queueStats is a consistent reading of the queue's counters.
type queueStats struct {
	sent, resent, dropped      uint64
	backlogLines, backlogBytes int
	windowLines, windowBytes   int // in the window or queued as resends
}

func (q *queue) stats() queueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return queueStats{
		sent:         q.sent,
		resent:       q.resent,
		dropped:      q.dropped,
		backlogLines: q.backlogLines,
		backlogBytes: q.backlogBytes,
		windowLines:  q.windowLines + q.resendLines,
		windowBytes:  q.windowSize + q.resendBytes,
	}
}

// release frees the memory of every chunk. The counters keep their values,
// so that the lines never sent can still be read; the queue must not be used
// otherwise afterwards.
func (q *queue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range []*chunkList{&q.pending, &q.window} {
		for l.len() > 0 {
			q.pool.put(l.popFront())
		}
	}
	q.taken, q.frontAcked = 0, 0
	q.pool.release()
}
