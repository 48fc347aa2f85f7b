package topk

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	// DefaultBuckets is how many buckets make a window when Config.Buckets
	// is 0: a 1m window slides in steps of 10s.
	DefaultBuckets = 6
	// MaxBuckets bounds Config.Buckets.
	MaxBuckets = 64
	// MaxCapacity bounds Config.Capacity: an index slot holds a position
	// in 32 bits, and the index has twice the capacity's slots.
	MaxCapacity = 1 << 30
)

// Config configures a TopK of keys of type K.
type Config[K comparable] struct {
	// Capacity is how many keys each bucket holds: the aggregation is
	// exact while the distinct keys in the window fit it.
	Capacity int
	// Window is how far back Top looks.
	Window time.Duration
	// Buckets is how many buckets make the window (0 means
	// DefaultBuckets); the window slides in steps of Window/Buckets.
	Buckets int
	// Clock gives the time that moves the window; nil means time.Now.
	// Tests pass a clock they move by hand.
	Clock func() time.Time
	// Hash hashes a key, its upper 32 bits well mixed; nil means
	// hash/maphash's Comparable with a random seed. A caller whose key
	// is a few machine words passes a cheaper one.
	Hash func(K) uint64
}

// Counts are the bytes and packets of one key, per direction.
type Counts struct {
	OrigBytes    uint64
	OrigPackets  uint64
	ReplyBytes   uint64
	ReplyPackets uint64
}

// Row is one key of a Top: its counts over the window and their error.
type Row[K comparable] struct {
	// Key is the key as the caller gave it to Add.
	Key K
	// Counts are what was counted while the key was held. With Error 0
	// they are exact; otherwise each may be under the truth, by at most
	// Error bytes for the bytes.
	Counts
	// Error is the most that Bytes may be over the truth: 0 when the key
	// was held by every bucket of the window since it first moved in it.
	Error uint64
}

// Bytes returns the upper bound of the key's orig + reply bytes over the
// window, the value Top ranks by: within [truth, truth + Error].
func (r Row[K]) Bytes() uint64 {
	return r.OrigBytes + r.ReplyBytes + r.Error
}

// Snapshot is one reading of a TopK.
type Snapshot[K comparable] struct {
	// Rows are the top keys, largest Bytes first; ties by the counted
	// bytes, then in no particular order.
	Rows []Row[K]
	// Tracked is how many distinct keys the window's buckets hold.
	Tracked int
	// Exact reports that no bucket of the window evicted a key: every
	// error is 0.
	Exact bool
	// MaxError is the largest Error of Rows.
	MaxError uint64
}

// entry is one key held by a bucket and its counts: 64 bytes, one cache
// line, for a key of 32 bytes such as the pipeline's talkers.
type entry[K comparable] struct {
	key K
	c   Counts
}

// meta is what a bucket keeps of an entry beside it, in the same order:
// what eviction reads, so that it reads 24 bytes an entry, not the
// entries.
type meta struct {
	// weight is the entry's Space-Saving count, err plus the bytes
	// counted: an upper bound of the key's bytes in the bucket.
	weight uint64
	// err is the bucket's floor when the key came in.
	err uint64
	// hash is the key's hash, the 32 bits the index keeps.
	hash uint32
}

// bucket holds the keys of one step of the window. Only the current bucket
// changes; a sealed one is read by Top outside the lock.
type bucket[K comparable] struct {
	idx     index
	entries []entry[K]
	meta    []meta
	// holes are the slots of entries an eviction freed that no new key
	// took yet, and dead marks them (a bit a slot): only the current
	// bucket has any, a bucket being compacted when it is sealed.
	holes []int32
	dead  []uint64
	// floor bounds the bytes, in this bucket, of any key it does not hold.
	floor uint64
	// pins counts the Tops reading the bucket outside the lock.
	pins atomic.Int32
}

// view is a bucket as a Top reads it.
type view[K comparable] struct {
	idx     *index
	entries []entry[K]
	meta    []meta
	floor   uint64
}

// TopK is a ranked, bounded aggregation of bytes and packets per key over a
// sliding window. Add is called from one goroutine; Advance from the same
// one; Top, Snapshot and Tracked from any goroutine. The zero value is not
// usable: call New.
type TopK[K comparable] struct {
	capacity int
	evictN   int
	width    time.Duration
	nb       int
	window   time.Duration
	clock    func() time.Time
	hash     func(K) uint64
	epoch    time.Time

	mu sync.Mutex
	// cur is the bucket Adds go to, for step curSlot of the clock.
	cur     *bucket[K]
	curSlot int64
	// sealed are the previous nb-1 buckets, newest first; nil for a step
	// that saw no Add.
	sealed []*bucket[K]
	// free holds cleared buckets to reuse.
	free []*bucket[K]
	// selected is eviction's scratch, a copy of the weights for an exact
	// selection; rnd is its sampling and pivot source.
	selected []uint64
	rnd      uint64

	// topMu serialises Snapshots, which share the scratch below.
	topMu   sync.Mutex
	curCopy []entry[K]
	curMeta []meta
	curIdx  index
	pinned  []*bucket[K]
	views   []view[K]
}

// New returns an empty TopK whose first bucket starts at the clock's now.
func New[K comparable](cfg Config[K]) (*TopK[K], error) {
	if cfg.Capacity < 1 || cfg.Capacity > MaxCapacity {
		return nil, errCapacity
	}
	if cfg.Window <= 0 {
		return nil, errWindow
	}
	if cfg.Buckets == 0 {
		cfg.Buckets = DefaultBuckets
	}
	if cfg.Buckets < 1 || cfg.Buckets > MaxBuckets || cfg.Window/time.Duration(cfg.Buckets) <= 0 {
		return nil, errBuckets
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Hash == nil {
		seed := maphash.MakeSeed()
		cfg.Hash = func(k K) uint64 { return maphash.Comparable(seed, k) }
	}
	t := &TopK[K]{
		capacity: cfg.Capacity,
		evictN:   max(1, cfg.Capacity/evictFraction),
		width:    cfg.Window / time.Duration(cfg.Buckets),
		nb:       cfg.Buckets,
		clock:    cfg.Clock,
		hash:     cfg.Hash,
		epoch:    cfg.Clock(),
		sealed:   make([]*bucket[K], cfg.Buckets-1),
		rnd:      0x9e3779b97f4a7c15,
		curIdx:   newIndex(cfg.Capacity),
	}
	t.window = t.width * time.Duration(t.nb)
	t.cur = t.newBucket()
	return t, nil
}

// Capacity returns how many keys each bucket holds.
func (t *TopK[K]) Capacity() int { return t.capacity }

// Window returns how far back Top looks: Config.Window rounded down to a
// whole number of buckets.
func (t *TopK[K]) Window() time.Duration { return t.window }

// Add counts one delta of key in the current bucket. Deltas of zero are
// ignored. It is O(1) amortised and does not allocate once the buckets'
// storage has grown to its working size.
func (t *TopK[K]) Add(key K, origBytes, origPkts, replyBytes, replyPkts uint64) {
	c := Counts{OrigBytes: origBytes, OrigPackets: origPkts, ReplyBytes: replyBytes, ReplyPackets: replyPkts}
	if c == (Counts{}) {
		return
	}
	t.mu.Lock()
	t.addLocked(key, &c)
	t.mu.Unlock()
}

// Item is one key's delta, for AddAll.
type Item[K comparable] struct {
	Key K
	Counts
}

// AddAll counts the deltas of items in the current bucket, as many Adds
// would, under one lock.
func (t *TopK[K]) AddAll(items []Item[K]) {
	t.mu.Lock()
	for i := range items {
		if it := &items[i]; it.Counts != (Counts{}) {
			t.addLocked(it.Key, &it.Counts)
		}
	}
	t.mu.Unlock()
}

// h returns the 32 bits of key's hash the index keeps.
func (t *TopK[K]) h(key K) uint32 {
	return uint32(t.hash(key) >> 32)
}

// addLocked counts c, not all zero, for key in the current bucket.
func (t *TopK[K]) addLocked(key K, c *Counts) {
	b := t.cur
	h := t.h(key)
	s, i, ok := lookup(&b.idx, b.entries, key, h)
	if ok {
		e := &b.entries[i]
		e.c.OrigBytes += c.OrigBytes
		e.c.OrigPackets += c.OrigPackets
		e.c.ReplyBytes += c.ReplyBytes
		e.c.ReplyPackets += c.ReplyPackets
		b.meta[i].weight += c.OrigBytes + c.ReplyBytes
		return
	}
	if len(b.holes) == 0 && len(b.entries) >= t.capacity {
		t.evictLocked(b)
		// Eviction moved slots: find the key's again.
		s, _, _ = lookup(&b.idx, b.entries, key, h)
	}
	e := entry[K]{key: key, c: *c}
	m := meta{weight: b.floor + c.OrigBytes + c.ReplyBytes, err: b.floor, hash: h}
	if n := len(b.holes); n > 0 {
		i := b.holes[n-1]
		b.holes = b.holes[:n-1]
		b.dead[i>>6] &^= 1 << (i & 63)
		b.entries[i] = e
		b.meta[i] = m
		b.idx.set(s, h, i)
	} else {
		b.idx.set(s, h, int32(len(b.entries)))
		b.entries = append(b.entries, e)
		b.meta = append(b.meta, m)
	}
}

// StepEnd returns when the current bucket's step ends: Advance moves the
// window only at or after it. A caller that sums deltas before they reach
// Add hands its sums over before it calls Advance at or after StepEnd, and
// need not call Advance before.
func (t *TopK[K]) StepEnd() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.epoch.Add(time.Duration(t.curSlot+1) * t.width)
}

// Advance moves the window to the clock's now: buckets older than the
// window are dropped. Call it from the goroutine that calls Add, once per
// batch: Adds go to the bucket current at the latest Advance, and nothing
// else moves the window.
func (t *TopK[K]) Advance() {
	now := t.clock()
	t.mu.Lock()
	t.advanceLocked(now)
	t.mu.Unlock()
}

// advanceLocked seals the current bucket as many times as now has moved on
// by steps, at most nb times.
func (t *TopK[K]) advanceLocked(now time.Time) {
	d := now.Sub(t.epoch)
	if d < 0 {
		return
	}
	slot := int64(d / t.width)
	if slot <= t.curSlot {
		return
	}
	steps := min(slot-t.curSlot, int64(t.nb))
	t.curSlot = slot
	for range steps {
		cur := t.cur
		if len(cur.entries) == 0 {
			// Nothing to seal: the step stays nil and cur goes on.
			if len(t.sealed) > 0 {
				t.recycle(t.sealed[len(t.sealed)-1])
				copy(t.sealed[1:], t.sealed)
				t.sealed[0] = nil
			}
			cur.floor = 0
			continue
		}
		cur.compact()
		if len(t.sealed) == 0 {
			t.recycle(cur)
		} else {
			t.recycle(t.sealed[len(t.sealed)-1])
			copy(t.sealed[1:], t.sealed)
			t.sealed[0] = cur
		}
		t.cur = t.newBucket()
	}
}

// newBucket returns an empty bucket, reused when one is free.
func (t *TopK[K]) newBucket() *bucket[K] {
	if n := len(t.free); n > 0 {
		b := t.free[n-1]
		t.free = t.free[:n-1]
		return b
	}
	return &bucket[K]{idx: newIndex(t.capacity)}
}

// recycle clears an expired bucket for reuse, unless a Top still reads it.
func (t *TopK[K]) recycle(b *bucket[K]) {
	if b == nil || b.pins.Load() != 0 || len(t.free) >= 2 {
		return
	}
	b.idx.reset()
	b.entries = b.entries[:0]
	b.meta = b.meta[:0]
	b.holes = b.holes[:0]
	clear(b.dead)
	b.floor = 0
	t.free = append(t.free, b)
}

// evictFraction is the share of a full bucket one eviction frees: an
// eighth, so that a bucket full of keys that come once (a scan of more
// sources than the capacity) evicts once every capacity/8 new keys.
const evictFraction = 8

// sampleSize is how many weights an eviction samples to estimate its
// threshold; a bucket of at most that many entries is selected exactly.
const sampleSize = 256

// evictLocked evicts about evictN entries of the full bucket b, those with
// the smallest weights, and raises b's floor to the largest weight it
// evicted. Their slots become b's holes, which the next new keys take: no
// entry moves, so none is indexed again.
//
// The threshold th is the evictN/len-quantile of a sample of sampleSize
// weights, checked against the exact counts of the weights under and at
// it: every entry under th is evicted and as many at th as make evictN.
// When the estimate evicts fewer than half of evictN, or more than twice,
// th is selected exactly from all the weights instead, so that an eviction
// frees between evictN/2 and 2 evictN slots.
//
// Why the bound stays valid. The invariant is that, for bucket b, (1) any
// key b does not hold moved at most b.floor bytes in b's step, and (2) an
// entry's err is at least the bytes its key moved in the step before it was
// admitted, so that its weight (err plus the bytes counted since) is at
// least the key's true bytes in the step. Both hold for an empty bucket
// (floor 0). Admission keeps them: a new key is one b does not hold, so by
// (1) it moved at most floor, which becomes its err (2). Eviction keeps
// them: an evicted key's true bytes are at most its weight (2), which is at
// most mx, the largest weight evicted, and the floor becomes max(floor,
// mx), never lowered, so (1) holds for it and for every key that was
// already out. Which entries are evicted does not matter to the bound,
// only that the floor covers every one of them; the choice of the smallest
// weights (whether th is estimated or exact) only keeps the floor, and so
// the errors, low.
func (t *TopK[K]) evictLocked(b *bucket[K]) {
	n := len(b.entries)
	w := b.meta
	want := min(t.evictN, n)
	th, lt, eq := uint64(0), 0, 0
	if n > sampleSize {
		var s [sampleSize]uint64
		for i := range s {
			s[i] = w[t.rand()%uint64(n)].weight
		}
		slices.Sort(s[:])
		th = s[sampleSize*want/n]
		lt, eq = count(w, th)
		if take := lt + min(eq, max(want-lt, 0)); take < want/2 || lt > 2*want {
			lt = -1
		}
	}
	if n <= sampleSize || lt < 0 {
		// Exact: the want-th smallest, selected in a copy so that w
		// stays in the entries' order.
		s := t.selected[:0]
		for i := range w {
			s = append(s, w[i].weight)
		}
		t.selected = s
		th = t.selectKth(s, want-1)
		lt, _ = count(w, th)
	}
	ties := max(want-lt, 0)
	if ties > 0 {
		// Ties at th are evicted: th is the largest weight evicted.
		b.floor = max(b.floor, th)
	}
	var mx uint64
	if len(b.dead) < (n+63)/64 {
		b.dead = make([]uint64, (t.capacity+63)/64)
	}
	for i := range w {
		wt := w[i].weight
		if wt > th || wt == th && ties == 0 {
			continue
		}
		if wt == th {
			ties--
		}
		mx = max(mx, wt)
		// The entry stays as it is, dead, until a new key takes it.
		b.idx.remove(b.idx.slotAt(w[i].hash, int32(i)))
		w[i].weight = 0
		b.dead[i>>6] |= 1 << (i & 63)
		b.holes = append(b.holes, int32(i))
	}
	b.floor = max(b.floor, mx)
	// The last holes are taken first: the lowest slots first.
	slices.Reverse(b.holes)
}

// count returns how many weights of w are under th and how many equal it.
func count(w []meta, th uint64) (lt, eq int) {
	for i := range w {
		if x := w[i].weight; x < th {
			lt++
		} else if x == th {
			eq++
		}
	}
	return lt, eq
}

// rand returns the next number of t's xorshift generator.
func (t *TopK[K]) rand() uint64 {
	t.rnd ^= t.rnd << 13
	t.rnd ^= t.rnd >> 7
	t.rnd ^= t.rnd << 17
	return t.rnd
}

// compact moves b's last entries into its holes, so that a sealed bucket
// has none: at most evictN entries move and are indexed again, once a
// step.
func (b *bucket[K]) compact() {
	if len(b.holes) == 0 {
		return
	}
	isDead := func(i int) bool { return b.dead[i>>6]&(1<<(i&63)) != 0 }
	i, j := 0, len(b.entries)-1
	for {
		for i <= j && !isDead(i) {
			i++
		}
		for j > i && isDead(j) {
			j--
		}
		if i >= j {
			break
		}
		h := b.meta[j].hash
		b.idx.set(b.idx.slotAt(h, int32(j)), h, int32(i))
		b.entries[i] = b.entries[j]
		b.entries[j] = entry[K]{}
		b.meta[i] = b.meta[j]
		b.dead[i>>6] &^= 1 << (i & 63)
		b.dead[j>>6] |= 1 << (j & 63)
		i++
		j--
	}
	// Every slot from the first dead one on is dead now.
	n := len(b.entries) - len(b.holes)
	clear(b.entries[n:])
	b.entries = b.entries[:n]
	b.meta = b.meta[:n]
	b.holes = b.holes[:0]
	clear(b.dead)
}

// selectKth returns the k-th smallest of w (0-based), reordering w:
// quickselect with random pivots, O(len(w)) expected.
func (t *TopK[K]) selectKth(w []uint64, k int) uint64 {
	lo, hi := 0, len(w)-1
	for lo < hi {
		p := w[lo+int(t.rand()%uint64(hi-lo+1))]
		// Three-way partition: [lo,lt) < p, [lt,gt] == p, (gt,hi] > p.
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch {
			case w[i] < p:
				w[lt], w[i] = w[i], w[lt]
				lt++
				i++
			case w[i] > p:
				w[i], w[gt] = w[gt], w[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return p
		}
	}
	return w[k]
}

// Top returns the n keys with the largest orig + reply bytes over the
// window; see Snapshot.
func (t *TopK[K]) Top(n int) []Row[K] {
	return t.Snapshot(n).Rows
}

// Tracked returns how many distinct keys the window's buckets hold.
func (t *TopK[K]) Tracked() int {
	return t.Snapshot(0).Tracked
}

// Snapshot merges the buckets of the window that ends at the clock's now
// into the n top rows. It moves nothing: buckets the window has passed
// since the latest Advance are left out, and only Advance seals and drops
// them, so that a caller that sums deltas before they reach Add knows
// which bucket they land in. It holds the lock only to copy the current
// bucket (at most Capacity entries) and to pin the sealed ones, which it
// merges outside the lock; concurrent Snapshots run one at a time. The
// cost is O(Buckets² · Capacity) index look-ups at worst and O(n)
// allocation.
func (t *TopK[K]) Snapshot(n int) Snapshot[K] {
	n = max(n, 0)
	now := t.clock()
	t.topMu.Lock()
	defer t.topMu.Unlock()

	t.mu.Lock()
	// first is the oldest step the window ending now holds.
	first := t.curSlot - int64(t.nb) + 1
	if d := now.Sub(t.epoch); d >= 0 {
		first = max(first, int64(d/t.width)-int64(t.nb)+1)
	}
	withCur := t.curSlot >= first
	if b := t.cur; !withCur {
		t.curCopy, t.curMeta = t.curCopy[:0], t.curMeta[:0]
	} else if len(b.holes) == 0 {
		t.curCopy = append(t.curCopy[:0], b.entries...)
		t.curMeta = append(t.curMeta[:0], b.meta...)
	} else {
		t.curCopy = slices.Grow(t.curCopy[:0], len(b.entries)-len(b.holes))
		t.curMeta = slices.Grow(t.curMeta[:0], len(b.entries)-len(b.holes))
		for i := range b.entries {
			if b.dead[i>>6]&(1<<(i&63)) == 0 {
				t.curCopy = append(t.curCopy, b.entries[i])
				t.curMeta = append(t.curMeta, b.meta[i])
			}
		}
	}
	curFloor := t.cur.floor
	pinned := t.pinned[:0]
	for k, b := range t.sealed {
		if b != nil && t.curSlot-1-int64(k) >= first {
			b.pins.Add(1)
			pinned = append(pinned, b)
		}
	}
	t.mu.Unlock()
	t.pinned = pinned
	defer func() {
		for i, b := range pinned {
			b.pins.Add(-1)
			pinned[i] = nil
		}
		t.curIdx.reset()
		clear(t.curCopy)
	}()

	// curIdx is empty: made so, and emptied when each Snapshot returns.
	for i := range t.curCopy {
		h := t.curMeta[i].hash
		s, _, _ := lookup(&t.curIdx, t.curCopy, t.curCopy[i].key, h)
		t.curIdx.set(s, h, int32(i))
	}
	views := t.views[:0]
	if withCur {
		views = append(views, view[K]{&t.curIdx, t.curCopy, t.curMeta, curFloor})
	}
	for _, b := range pinned {
		views = append(views, view[K]{&b.idx, b.entries, b.meta, b.floor})
	}
	t.views = views
	defer clear(views)

	s := Snapshot[K]{Exact: true}
	for _, v := range views {
		if v.floor != 0 {
			s.Exact = false
		}
	}
	h := rowHeap[K](make([]Row[K], 0, min(n, 1024)))
	for i, v := range views {
	entries:
		for j := range v.entries {
			e := &v.entries[j]
			kh := t.h(e.key)
			for _, u := range views[:i] {
				if _, _, ok := lookup(u.idx, u.entries, e.key, kh); ok {
					continue entries
				}
			}
			s.Tracked++
			if n == 0 {
				continue
			}
			r := Row[K]{Key: e.key, Counts: e.c, Error: v.meta[j].err}
			for _, u := range views[:i] {
				r.Error += u.floor
			}
			for _, u := range views[i+1:] {
				_, k, ok := lookup(u.idx, u.entries, e.key, kh)
				if !ok {
					r.Error += u.floor
					continue
				}
				o := &u.entries[k]
				r.OrigBytes += o.c.OrigBytes
				r.OrigPackets += o.c.OrigPackets
				r.ReplyBytes += o.c.ReplyBytes
				r.ReplyPackets += o.c.ReplyPackets
				r.Error += u.meta[k].err
			}
			h = h.offer(r, n)
		}
	}
	s.Rows = h.sorted()
	for _, r := range s.Rows {
		s.MaxError = max(s.MaxError, r.Error)
	}
	return s
}
