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

// A table holds the records of the tracked flows of one address family.
//
// The records sit in one dense array, kept in the order the kernel lists
// them: a dump walks the kernel's hash table bucket by bucket, so from one
// dump to the next the entries come in nearly the same order, and a dump
// reads the array from start to end instead of jumping through memory, the
// cost that dominates at a million flows. An index (open addressing, linear
// probing, positions from the kernel's id of the entry, a keyed SipHash
// that no packet sender can steer, and the start time, mixed with a
// per-table seed) finds any record at once: for events, for the entries a
// dump lists out of order, and for new ones. New records go at the end; a
// dump that found many out of order makes endDump put the array back in
// dump order.
//
// The array lives outside the Go heap, in an anonymous mapping (with huge
// pages once large) that grows in place: the garbage collector never scans
// it, and the table never needs twice its memory. Pointers to records are
// valid until the next insertion or sweep. A table is not safe
// for concurrent use.
type table[K flowKey] struct {
	recs []slot[K] // len: records and holes; cap: the mapping's room
	mem  []byte    // the mapping behind recs; nil when on the heap
	// index holds the position of each record plus one; 0 is empty.
	index []uint32
	seed  uint64
	n     int // records, holes not counted

	// The dump running: where the next entry is expected, the records
	// seen in the order seen, and how many were out of place.
	dumping   bool
	cursor    int
	order     []uint32
	misplaced int
}

type slot[K flowKey] struct {
	key K
	rec record
}

// Sizing. The index is kept at most 60% full so that probes stay short; it
// costs 4 bytes a slot. The array grows by a quarter, so that the memory per
// flow stays near the record's size.
const (
	minRecs    = 1024
	indexLoad  = 0.6
	growBy     = 1.25
	holesMax   = 0.25 // rebuild once this share of the array is holes
	misplacMax = 0.05 // rebuild in dump order once this share came out of place
	// hugeMin is the smallest array backed by huge pages: getting them may
	// make the kernel compact memory, worth it for large tables only.
	hugeMin = 16 << 20
)

func newTable[K flowKey]() *table[K] {
	t := &table[K]{seed: rand.Uint64()}
	t.recs = t.alloc(minRecs)
	t.index = make([]uint32, indexSize(minRecs))
	return t
}

// indexSize returns the index size for n records.
func indexSize(n int) int {
	return int(float64(n)/indexLoad) + 1
}

// alloc returns an empty array with room for n records, in a mapping of
// its own when it can, and records the mapping in t.mem (unmapping the old
// one is the caller's job).
func (t *table[K]) alloc(n int) []slot[K] {
	size := n * int(unsafe.Sizeof(slot[K]{}))
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		// No mapping (a sandbox that forbids it): the Go heap will do.
		t.mem = nil
		return make([]slot[K], 0, n)
	}
	if size >= hugeMin {
		_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	}
	t.mem = mem
	return unsafe.Slice((*slot[K])(unsafe.Pointer(&mem[0])), n)[:0]
}

// free gives the memory back; the table is empty and unusable afterwards.
func (t *table[K]) free() {
	if t.mem != nil {
		_ = unix.Munmap(t.mem)
	}
	t.recs, t.mem, t.index, t.order, t.n = nil, nil, nil, nil, 0
}

// bytes returns the memory the table takes.
func (t *table[K]) bytes() int {
	return cap(t.recs)*int(unsafe.Sizeof(slot[K]{})) + 4*len(t.index) + 4*cap(t.order)
}

// home returns the index slot where the search for k starts.
func (t *table[K]) home(k *K) int {
	h := (*k).hash() ^ t.seed
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	hi, _ := bits.Mul64(h, uint64(len(t.index)))
	return int(hi)
}

// find returns the index slot holding k's position, or the empty slot where
// it would go, and the position (-1 when k is absent).
func (t *table[K]) find(k *K) (slot int, pos int) {
	i := t.home(k)
	for {
		v := t.index[i]
		if v == 0 {
			return i, -1
		}
		if t.recs[v-1].key == *k {
			return i, int(v - 1)
		}
		if i++; i == len(t.index) {
			i = 0
		}
	}
}

// get returns the record of k, or nil.
func (t *table[K]) get(k *K) *record {
	if _, p := t.find(k); p >= 0 {
		return &t.recs[p].rec
	}
	return nil
}

// next returns the record of k, listed by the dump running, or nil: it
// looks first where the dump order says it should be.
func (t *table[K]) next(k *K) *record {
	for t.cursor < len(t.recs) && t.recs[t.cursor].rec.state == stateEmpty {
		t.cursor++
	}
	p := t.cursor
	if p >= len(t.recs) || t.recs[p].key != *k {
		if _, p = t.find(k); p < 0 {
			return nil
		}
		t.misplaced++
	}
	t.cursor = p + 1
	t.order = append(t.order, uint32(p))
	return &t.recs[p].rec
}

// put returns the record of k, adding a live record with zero counters at
// the end of the array if there is none, and whether it was added.
func (t *table[K]) put(k *K) (*record, bool) {
	i, p := t.find(k)
	if p >= 0 {
		return &t.recs[p].rec, false
	}
	if len(t.recs) == cap(t.recs) || float64(t.n+1) > indexLoad*float64(len(t.index)) {
		t.grow()
		i, _ = t.find(k)
	}
	p = len(t.recs)
	t.recs = append(t.recs, slot[K]{key: *k, rec: record{state: stateLive}})
	t.index[i] = uint32(p + 1)
	t.n++
	if t.dumping {
		t.order = append(t.order, uint32(p))
	}
	return &t.recs[p].rec, true
}

// beginDump starts following a dump's order.
func (t *table[K]) beginDump() {
	t.dumping, t.cursor, t.order, t.misplaced = true, 0, t.order[:0], 0
}

// sweep calls fn with every record, once, in array order, and removes those
// for which it returns false. After a complete dump (ordered), a table whose
// dump found many records out of place is put back in dump order.
func (t *table[K]) sweep(fn func(k *K, r *record) (keep bool), ordered bool) {
	t.dumping = false
	holes := 0
	for p := range t.recs {
		s := &t.recs[p]
		if s.rec.state == stateEmpty {
			holes++
			continue
		}
		if fn(&s.key, &s.rec) {
			continue
		}
		t.remove(p)
		holes++
	}
	switch {
	case ordered && float64(t.misplaced) > misplacMax*float64(t.n):
		t.reorder()
	case float64(holes) > holesMax*float64(len(t.recs)):
		t.compact()
		t.reindex()
	}
	if cap(t.recs) > 4*minRecs && t.n < cap(t.recs)/4 {
		t.shrink()
	}
}

// remove empties the record at position p and its index slot, moving back
// the index entries after it that would no longer be found (backward-shift
// deletion: the index keeps no tombstones).
func (t *table[K]) remove(p int) {
	i, _ := t.find(&t.recs[p].key)
	t.recs[p] = slot[K]{}
	t.n--
	j := i
	for {
		if j++; j == len(t.index) {
			j = 0
		}
		v := t.index[j]
		if v == 0 {
			break
		}
		// The entry at j may move to i if its home is not in (i, j],
		// cyclically.
		h := t.home(&t.recs[v-1].key)
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			t.index[i] = v
			i = j
		}
	}
	t.index[i] = 0
}

// grow makes room for a quarter more records: holes are squeezed out in
// place, the array's mapping is extended in place (the kernel moves page
// tables, not pages, so the table never needs twice its memory) and the
// index is made anew.
func (t *table[K]) grow() {
	t.compact()
	n := len(t.recs)
	want := max(int(float64(n)*growBy)+1, minRecs)
	if want > cap(t.recs) {
		size := want * int(unsafe.Sizeof(slot[K]{}))
		mem, err := []byte(nil), error(unix.EINVAL)
		if t.mem != nil {
			mem, err = unix.Mremap(t.mem, size, unix.MREMAP_MAYMOVE)
		}
		if err == nil {
			if size >= hugeMin {
				_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
			}
			t.mem = mem
			t.recs = unsafe.Slice((*slot[K])(unsafe.Pointer(&mem[0])), want)[:n]
		} else {
			oldMem := t.mem
			recs := t.alloc(want)[:n]
			copy(recs, t.recs)
			t.recs = recs
			if oldMem != nil {
				_ = unix.Munmap(oldMem)
			}
		}
	}
	t.reindex()
}

// shrink gives back the memory of a table that emptied, leaving room for a
// quarter more records than it holds.
func (t *table[K]) shrink() {
	t.compact()
	want := max(int(float64(len(t.recs))*growBy)+1, minRecs)
	if t.mem == nil {
		recs := make([]slot[K], len(t.recs), want)
		copy(recs, t.recs)
		t.recs = recs
	} else if mem, err := unix.Mremap(t.mem, want*int(unsafe.Sizeof(slot[K]{})), unix.MREMAP_MAYMOVE); err == nil {
		t.mem = mem
		t.recs = unsafe.Slice((*slot[K])(unsafe.Pointer(&mem[0])), want)[:len(t.recs)]
	}
	t.reindex()
}

// compact squeezes the holes out of the array, keeping the order.
func (t *table[K]) compact() {
	n := 0
	for p := range t.recs {
		if t.recs[p].rec.state == stateEmpty {
			continue
		}
		t.recs[n] = t.recs[p]
		n++
	}
	clear(t.recs[n:])
	t.recs = t.recs[:n]
	// Positions moved: what the running dump knew of them is lost, which
	// costs lookups, not correctness.
	t.order = t.order[:0]
	t.cursor = min(t.cursor, n)
}

// reorder puts the records the running dump saw first, in the order it saw
// them, then the others, and squeezes out the holes: in place, moving each
// record once.
func (t *table[K]) reorder() {
	// dest[p] is where the record at p goes; holes go after the records.
	const unset = ^uint32(0)
	dest := make([]uint32, len(t.recs))
	for p := range dest {
		dest[p] = unset
	}
	n := uint32(0)
	place := func(p int) {
		if t.recs[p].rec.state != stateEmpty && dest[p] == unset {
			dest[p] = n
			n++
		}
	}
	for _, p := range t.order {
		place(int(p))
	}
	for p := range t.recs {
		place(p)
	}
	tail := n
	for p := range dest {
		if dest[p] == unset {
			dest[p] = tail
			tail++
		}
	}
	for i := range dest {
		for dest[i] != uint32(i) {
			j := dest[i]
			t.recs[i], t.recs[j] = t.recs[j], t.recs[i]
			dest[i], dest[j] = dest[j], dest[i]
		}
	}
	clear(t.recs[n:])
	t.recs = t.recs[:n]
	t.order = t.order[:0]
	t.cursor = 0
	t.reindex()
}

// reindex makes the index anew, sized for the array's room.
func (t *table[K]) reindex() {
	if size := indexSize(cap(t.recs)); size != len(t.index) {
		t.index = make([]uint32, size)
	} else {
		clear(t.index)
	}
	for p := range t.recs {
		i, _ := t.find(&t.recs[p].key)
		t.index[i] = uint32(p + 1)
	}
}
