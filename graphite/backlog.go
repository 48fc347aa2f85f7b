package graphite

import "sync"

// minRing is the smallest capacity the backlog ring shrinks to.
const minRing = 64

// backlog is the bounded queue of formatted lines waiting for carbon. Lines
// are kept in a ring, oldest first. The sender takes a batch off the front,
// writes it, and then either commits it (the lines are sent) or gives it back
// (the lines return to the front, in order). Every line pushed ends up counted
// exactly once, as sent or as dropped, unless it is still queued or in
// flight.
//
// The limits apply to the queued lines. The batch being written is not
// counted against them, so that lines in flight are never dropped; when a
// failed batch is given back, the limits are enforced again and the oldest
// lines, those of the batch first, are dropped.
type backlog struct {
	maxPoints int // 0: no limit
	maxBytes  int // 0: no limit

	// ready holds a token when lines were pushed since the sender last
	// looked; it wakes the sender without ever blocking the pusher.
	ready chan struct{}

	mu            sync.Mutex
	ring          []string
	head          int // index of the oldest queued line
	n             int // number of queued lines
	bytes         int // bytes of the queued lines
	inflight      int // lines taken by the sender and not yet settled
	inflightBytes int
	sent          uint64
	dropped       uint64
}

func newBacklog(maxPoints, maxBytes int) *backlog {
	return &backlog{
		maxPoints: maxPoints,
		maxBytes:  maxBytes,
		ready:     make(chan struct{}, 1),
	}
}

// push appends lines at the back, drops the oldest queued lines while a limit
// is exceeded, and wakes the sender. It never blocks on the sender.
func (b *backlog) push(lines []string) {
	if len(lines) == 0 {
		return
	}
	b.mu.Lock()
	for _, l := range lines {
		b.pushBack(l)
	}
	b.enforce()
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// take moves lines from the front of the queue into batch, up to maxBytes
// bytes but always at least one line, and returns it. The lines are in flight
// until commit or giveBack. take returns batch empty when nothing is queued.
func (b *backlog) take(batch []string, maxBytes int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	size := 0
	for b.n > 0 {
		l := b.ring[b.head]
		if len(batch) > 0 && size+len(l) > maxBytes {
			break
		}
		b.popFront()
		batch = append(batch, l)
		size += len(l)
	}
	b.inflight += len(batch)
	b.inflightBytes += size
	b.shrink()
	return batch
}

// commit settles the batch in flight as sent.
func (b *backlog) commit(batch []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settle(batch)
	b.sent += uint64(len(batch))
}

// giveBack returns the batch in flight to the front of the queue, in its
// original order, and then drops the oldest lines beyond the limits.
func (b *backlog) giveBack(batch []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settle(batch)
	for i := len(batch) - 1; i >= 0; i-- {
		b.pushFront(batch[i])
	}
	b.enforce()
}

func (b *backlog) settle(batch []string) {
	b.inflight -= len(batch)
	for _, l := range batch {
		b.inflightBytes -= len(l)
	}
}

// empty reports whether no line is queued. Lines in flight do not count.
func (b *backlog) empty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n == 0
}

// backlogStats is a consistent reading of the backlog counters.
type backlogStats struct {
	sent, dropped uint64
	points, bytes int // queued plus in flight
}

func (b *backlog) stats() backlogStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return backlogStats{
		sent:    b.sent,
		dropped: b.dropped,
		points:  b.n + b.inflight,
		bytes:   b.bytes + b.inflightBytes,
	}
}

// enforce drops the oldest queued lines while a limit is exceeded. A single
// line longer than the byte limit is dropped as well.
func (b *backlog) enforce() {
	for b.n > 0 && ((b.maxPoints > 0 && b.n > b.maxPoints) || (b.maxBytes > 0 && b.bytes > b.maxBytes)) {
		b.popFront()
		b.dropped++
	}
	b.shrink()
}

func (b *backlog) pushBack(l string) {
	b.grow()
	b.ring[(b.head+b.n)%len(b.ring)] = l
	b.n++
	b.bytes += len(l)
}

func (b *backlog) pushFront(l string) {
	b.grow()
	b.head = (b.head - 1 + len(b.ring)) % len(b.ring)
	b.ring[b.head] = l
	b.n++
	b.bytes += len(l)
}

func (b *backlog) popFront() string {
	l := b.ring[b.head]
	b.ring[b.head] = ""
	b.head = (b.head + 1) % len(b.ring)
	b.n--
	b.bytes -= len(l)
	return l
}

// grow makes room for one more line, doubling the ring when it is full.
func (b *backlog) grow() {
	if b.n < len(b.ring) {
		return
	}
	b.resize(max(minRing, 2*len(b.ring)))
}

// shrink reduces the ring to twice the number of queued lines when it is
// less than a quarter full, so the memory taken during a long outage is given
// back once carbon has caught up.
func (b *backlog) shrink() {
	if len(b.ring) > minRing && b.n < len(b.ring)/4 {
		b.resize(max(minRing, 2*b.n))
	}
}

func (b *backlog) resize(size int) {
	ring := make([]string, size)
	for i := range b.n {
		ring[i] = b.ring[(b.head+i)%len(b.ring)]
	}
	b.ring, b.head = ring, 0
}
