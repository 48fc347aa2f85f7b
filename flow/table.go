package flow

import (
	"math/bits"
	"math/rand/v2"
	"unsafe"

	"golang.org/x/sys/unix"
)

// flowKey is the identity of a tracked flow of one address family.
type flowKey interface {
	comparable
	// hash returns a hash of the identity: its kernel id and start time.
	hash() uint64
}

// A table holds the records of tracked flows of one address family, keyed by
// their identity: an open-addressing hash table with linear probing and
// records stored in the slots, so that reading and updating a flow touches
// one place in memory. Its slots live outside the Go heap, in an anonymous
// mapping the kernel is asked to back with huge pages: a table of a million
// flows is ~100 MB that the garbage collector never scans and the processor
// reaches with few TLB misses. Slot positions come from the kernel's id of
// the entry (a keyed SipHash of the entry, which no packet sender can steer)
// and the start time, mixed with a per-table seed.
//
// A table is not safe for concurrent use.
type table[K flowKey] struct {
	slots []slot[K]
	n     int // slots in use
	seed  uint64
	mem   []byte // the mapping behind slots; nil when they are on the heap
}

type slot[K flowKey] struct {
	key K
	rec record
}

// Table sizing: grow past maxLoad to growBy times the size, shrink below
// minLoad. A small growth step keeps the memory per flow near the slot size;
// growing costs a rehash of every record, amortised over the flows added
// since the last one.
const (
	minSlots = 1024
	maxLoad  = 0.85
	minLoad  = 0.2
	growBy   = 1.25
	// shrinkTo is the load a table shrunk for having emptied is left at:
	// room to grow again without resizing at once.
	shrinkTo = 0.4
	// hugeMin is the smallest slot array backed by huge pages.
	hugeMin = 16 << 20
)

func newTable[K flowKey]() *table[K] {
	t := &table[K]{seed: rand.Uint64()}
	t.alloc(minSlots)
	return t
}

// alloc gives t an empty slot array of n slots.
func (t *table[K]) alloc(n int) {
	size := n * int(unsafe.Sizeof(slot[K]{}))
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		// No mapping (a sandbox that forbids it): the Go heap will do.
		t.slots, t.mem = make([]slot[K], n), nil
		return
	}
	if size >= hugeMin {
		// Only worth it for large tables: getting huge pages may make
		// the kernel compact memory at the first touch.
		_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	}
	t.slots = unsafe.Slice((*slot[K])(unsafe.Pointer(&mem[0])), n)
	t.mem = mem
}

// free gives the slot array's memory back.
func (t *table[K]) free() {
	if t.mem != nil {
		_ = unix.Munmap(t.mem)
	}
	t.slots, t.mem, t.n = nil, nil, 0
}

// bytes returns the memory the slots take.
func (t *table[K]) bytes() int {
	return len(t.slots) * int(unsafe.Sizeof(slot[K]{}))
}

// home returns the slot where the search for k starts.
func (t *table[K]) home(k *K) int {
	h := (*k).hash() ^ t.seed
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	hi, _ := bits.Mul64(h, uint64(len(t.slots)))
	return int(hi)
}

// find returns the slot holding k, or the empty slot where it would go, and
// whether k is there.
func (t *table[K]) find(k *K) (int, bool) {
	i := t.home(k)
	for {
		s := &t.slots[i]
		if s.rec.state == stateEmpty {
			return i, false
		}
		if s.key == *k {
			return i, true
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// get returns the record of k, or nil. The pointer is valid until the next
// insertion or removal.
func (t *table[K]) get(k *K) *record {
	if i, ok := t.find(k); ok {
		return &t.slots[i].rec
	}
	return nil
}

// put returns the record of k, adding a live record with zero counters if
// there is none, and whether it was added. The pointer is valid until the
// next insertion or removal.
func (t *table[K]) put(k *K) (*record, bool) {
	i, ok := t.find(k)
	if ok {
		return &t.slots[i].rec, false
	}
	if float64(t.n+1) > maxLoad*float64(len(t.slots)) {
		t.resize(int(float64(len(t.slots))*growBy) + 1)
		i, _ = t.find(k)
	}
	t.n++
	t.slots[i] = slot[K]{key: *k, rec: record{state: stateLive}}
	return &t.slots[i].rec, true
}

// resize moves every record to a new slot array of n slots.
func (t *table[K]) resize(n int) {
	old, oldMem := t.slots, t.mem
	t.alloc(max(n, minSlots))
	for i := range old {
		if s := &old[i]; s.rec.state != stateEmpty {
			j, _ := t.find(&s.key)
			t.slots[j] = *s
		}
	}
	if oldMem != nil {
		_ = unix.Munmap(oldMem)
	}
}

// sweep calls fn with every record, once, and removes those for which it
// returns false. Records are not inserted meanwhile.
func (t *table[K]) sweep(fn func(k *K, r *record) (keep bool)) {
	// Start after an empty slot: removing a record moves only later
	// records of its cluster back, and a cluster never spans an empty
	// slot, so every record is seen once.
	start := 0
	for t.slots[start].rec.state != stateEmpty {
		start++
	}
	for c, i := 0, start+1; c < len(t.slots); {
		if i == len(t.slots) {
			i = 0
		}
		s := &t.slots[i]
		if s.rec.state == stateEmpty || fn(&s.key, &s.rec) {
			i++
			c++
			continue
		}
		// Slot i now holds a record moved back from later in its
		// cluster, or nothing: look at it again.
		t.remove(i)
	}
	if len(t.slots) > 4*minSlots && float64(t.n) < minLoad*float64(len(t.slots)) {
		t.resize(int(float64(t.n)/shrinkTo) + 1)
	}
}

// remove empties slot i and moves back the records after it that would no
// longer be found (backward-shift deletion: the table keeps no tombstones).
func (t *table[K]) remove(i int) {
	t.n--
	j := i
	for {
		if j++; j == len(t.slots) {
			j = 0
		}
		s := &t.slots[j]
		if s.rec.state == stateEmpty {
			break
		}
		// The record at j may move to i if its home is not in (i, j],
		// cyclically.
		h := t.home(&s.key)
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			t.slots[i] = *s
			i = j
		}
	}
	t.slots[i] = slot[K]{}
}
