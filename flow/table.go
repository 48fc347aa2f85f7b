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
// dump lists out of order, and for new ones. Each index entry holds, in
// the bits its position leaves free, a tag from the hash, so that a search
// reads only the records whose tag matches: a flow that is not in the table
// (most DESTROY events are of flows no dump listed) costs one index read,
// not a record read for each entry of its probe run. New records go at the
// end; a dump that found many out of order makes endDump put the array back
// in dump order.
//
// The array lives outside the Go heap, in an anonymous mapping of whole
// huge pages (a mapping) that grows without copying: the garbage collector
// never scans it, and the table never needs twice its memory. Pointers to
// records are valid until the next insertion or sweep. A table is not safe
// for concurrent use.
type table[K flowKey] struct {
	recs []slot[K] // len: records and holes; cap: the mapping's room
	mem  mapping   // the mapping behind recs; empty when on the heap
	// index holds the position of each record plus one in its low
	// bits, those of posMask, and a tag from the record's hash in the
	// others; 0 is empty.
	index   []uint32
	idxMem  mapping // the mapping behind index; empty when on the heap
	posMask uint32
	seed    uint64
	n       int // records, holes not counted

	// The dump running: where the next entry is expected, the records
	// seen in the order seen, and how many were out of place.
	dumping   bool
	cursor    int
	order     []uint32
	misplaced int
	// removed is sweep's scratch: the positions it empties, while they
	// are few.
	removed []uint32
	// touching is touch's scratch.
	touching []uint32
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
	rebuildMin = 0.02 // a sweep that removes this share makes the index anew
	touchMax   = 64   // hashes one touch may be given
)

func newTable[K flowKey]() *table[K] {
	t := &table[K]{seed: rand.Uint64()}
	t.recs = t.alloc(minRecs)
	t.reindex()
	t.touching = make([]uint32, 0, 4*touchMax)
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
	mem, err := mapAnon(n * int(unsafe.Sizeof(slot[K]{})))
	if err != nil {
		// No mapping (a sandbox that forbids it): the Go heap will do.
		t.mem = mapping{}
		return make([]slot[K], 0, n)
	}
	t.mem = mem
	return unsafe.Slice((*slot[K])(mem.p), n)[:0]
}

// allocIndex replaces the index with an empty one of n slots. A large
// index gets a mapping of its own with huge pages, as the array does: every
// event reads it at a random place.
func (t *table[K]) allocIndex(n int) {
	t.idxMem.unmap()
	if size := 4 * n; size >= hugePage {
		if mem, err := mapAnon(size); err == nil {
			t.idxMem = mem
			t.index = unsafe.Slice((*uint32)(mem.p), n)
			return
		}
	}
	t.index = make([]uint32, n)
}

// free gives the memory back; the table is empty and unusable afterwards.
func (t *table[K]) free() {
	t.mem.unmap()
	t.idxMem.unmap()
	t.recs, t.index, t.order, t.removed, t.n = nil, nil, nil, nil, 0
}

// bytes returns the memory the table takes.
func (t *table[K]) bytes() int {
	return cap(t.recs)*int(unsafe.Sizeof(slot[K]{})) + 4*len(t.index) + 4*cap(t.order) + 4*cap(t.removed)
}

// mix returns the hash of k with the table's seed.
func (t *table[K]) mix(k *K) uint64 {
	return t.mixHash((*k).hash())
}

// mixHash returns the hash of a key whose hash method returns h, with the
// table's seed.
func (t *table[K]) mixHash(h uint64) uint64 {
	h ^= t.seed
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// slotOf returns the index slot where the search for hash h starts (from
// its high bits) and the tag of h (from its low bits) as index entries hold
// it.
func (t *table[K]) slotOf(h uint64) (int, uint32) {
	hi, _ := bits.Mul64(h, uint64(len(t.index)))
	return int(hi), uint32(h) &^ t.posMask
}

// home returns the index slot where the search for k starts.
func (t *table[K]) home(k *K) int {
	i, _ := t.slotOf(t.mix(k))
	return i
}

// posOf returns the record position of index entry v, which is not 0.
func (t *table[K]) posOf(v uint32) int {
	return int(v&t.posMask) - 1
}

// find returns the index slot holding k's position, or the empty slot where
// it would go, and the position (-1 when k is absent).
func (t *table[K]) find(k *K) (slot int, pos int) {
	i, tag := t.slotOf(t.mix(k))
	for {
		v := t.index[i]
		if v == 0 {
			return i, -1
		}
		if v&^t.posMask == tag {
			if p := t.posOf(v); t.recs[p].key == *k {
				return i, p
			}
		}
		if i++; i == len(t.index) {
			i = 0
		}
	}
}

// touch reads the memory that searches for the keys whose hash methods
// return hs will read (the index slots where they start, then the records
// whose tags match), and returns a sum of it, so that the searches, made
// next, find it in the caches. Each pass does nothing but independent loads,
// which the processor makes side by side: a search alone would wait for
// each miss in turn, on a large table nearly one per slot and record read.
// hs must hold at most touchMax hashes.
func (t *table[K]) touch(hs []uint64) uint32 {
	at := t.touching[:0]
	for _, h := range hs {
		i, _ := t.slotOf(t.mixHash(h))
		at = append(at, uint32(i))
	}
	var sum uint32
	for _, i := range at {
		sum += t.index[i]
	}
	// Then the records each probe run points at with a matching tag.
	recs := at[len(at):]
	for n, i := range at {
		_, tag := t.slotOf(t.mixHash(hs[n]))
		for j := int(i); ; {
			v := t.index[j]
			if v == 0 {
				break
			}
			if v&^t.posMask == tag && len(recs) < cap(recs) {
				recs = append(recs, uint32(t.posOf(v)))
			}
			if j++; j == len(t.index) {
				j = 0
			}
		}
	}
	for _, p := range recs {
		// The key and the state, which may be in two cache lines.
		s := &t.recs[p]
		sum += uint32(*(*byte)(unsafe.Pointer(&s.key))) + uint32(s.rec.state)
	}
	return sum
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
	_, tag := t.slotOf(t.mix(k))
	t.index[i] = uint32(p+1) | tag
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
//
// The records removed leave the index once fn has seen every record: one
// by one when they are few, by making the index anew when they are many
// (as after a burst of DESTROY events, whose tombstones go all at once),
// which reads the array in order rather than the index at random.
func (t *table[K]) sweep(fn func(k *K, r *record) (keep bool), ordered bool) {
	t.dumping = false
	holes := 0
	// The positions emptied, while they are few enough to leave one by one.
	removed, many := t.removed[:0], false
	few := int(rebuildMin * float64(len(t.recs)))
	for p := range t.recs {
		s := &t.recs[p]
		if s.rec.state == stateEmpty {
			holes++
			continue
		}
		if fn(&s.key, &s.rec) {
			continue
		}
		// Emptied, its key kept until it has left the index.
		s.rec = record{}
		t.n--
		holes++
		if !many {
			if many = len(removed) == few; !many {
				removed = append(removed, uint32(p))
			}
		}
	}
	switch {
	case ordered && float64(t.misplaced) > misplacMax*float64(t.n):
		t.reorder()
	case float64(holes) > holesMax*float64(len(t.recs)):
		t.compact()
		t.reindex()
	case many:
		t.reindex()
		for p := range t.recs {
			if s := &t.recs[p]; s.rec.state == stateEmpty {
				*s = slot[K]{}
			}
		}
	default:
		for _, p := range removed {
			t.unindex(int(p))
		}
	}
	t.removed = removed[:0]
	if cap(t.recs) > 4*minRecs && t.n < cap(t.recs)/4 {
		t.shrink()
	}
}

// unindex takes the record at position p, emptied already but for its
// key, out of the index and clears it, moving back the index entries after
// it that would no longer be found (backward-shift deletion: the index keeps
// no tombstones).
func (t *table[K]) unindex(p int) {
	i, _ := t.find(&t.recs[p].key)
	t.recs[p] = slot[K]{}
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
		h := t.home(&t.recs[t.posOf(v)].key)
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			t.index[i] = v
			i = j
		}
	}
	t.index[i] = 0
}

// grow makes room for a quarter more records: holes are squeezed out in
// place, the array's mapping is extended in place (the kernel moves page
// tables, not pages, so the table never needs twice its memory) and, when it
// is too small for the array's room, the index is made anew twice as large:
// a table that grows by a quarter at a time then remakes its index once per
// doubling, not at every step (each remake reads every record), at the cost
// of an index up to twice its smallest size (4 to 8 bytes a record). When
// records moved, it is made anew at its size.
func (t *table[K]) grow() {
	moved := t.compact()
	n := len(t.recs)
	want := max(int(float64(n)*growBy)+1, minRecs)
	if want > cap(t.recs) {
		err := error(unix.EINVAL)
		if t.mem.p != nil {
			err = t.mem.resize(want * int(unsafe.Sizeof(slot[K]{})))
		}
		if err == nil {
			t.recs = unsafe.Slice((*slot[K])(t.mem.p), want)[:n]
		} else {
			oldMem := t.mem
			recs := t.alloc(want)[:n]
			copy(recs, t.recs)
			t.recs = recs
			oldMem.unmap()
		}
	}
	switch need := indexSize(cap(t.recs)); {
	case need > len(t.index):
		t.reindexTo(max(need, 2*len(t.index)))
	case moved:
		t.reindexTo(len(t.index))
	}
}

// shrink gives back the memory of a table that emptied, leaving room for a
// quarter more records than it holds.
func (t *table[K]) shrink() {
	t.compact()
	want := max(int(float64(len(t.recs))*growBy)+1, minRecs)
	if t.mem.p == nil {
		recs := make([]slot[K], len(t.recs), want)
		copy(recs, t.recs)
		t.recs = recs
	} else if err := t.mem.resize(want * int(unsafe.Sizeof(slot[K]{}))); err == nil {
		t.recs = unsafe.Slice((*slot[K])(t.mem.p), want)[:len(t.recs)]
	}
	t.reindex()
}

// compact squeezes the holes out of the array, keeping the order, and
// reports whether a record moved. The index is then stale.
func (t *table[K]) compact() (moved bool) {
	if t.n == len(t.recs) {
		return false // no holes: nothing to read
	}
	n := 0
	for p := range t.recs {
		if t.recs[p].rec.state == stateEmpty {
			continue
		}
		if n != p {
			t.recs[n] = t.recs[p]
		}
		n++
	}
	if n == len(t.recs) {
		return false
	}
	clear(t.recs[n:])
	t.recs = t.recs[:n]
	// Positions moved: what the running dump knew of them is lost, which
	// costs lookups, not correctness.
	t.order = t.order[:0]
	t.cursor = min(t.cursor, n)
	return true
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
	t.reindexTo(indexSize(cap(t.recs)))
}

// reindexTo makes the index anew with size slots, at least those the
// array's room needs, and with as many tag bits as positions leave: the
// array never has more room than the index has slots. The keys of the
// records are distinct, so each goes into the first empty slot from its
// home without being compared.
func (t *table[K]) reindexTo(size int) {
	if size != len(t.index) {
		t.allocIndex(size)
	} else {
		clear(t.index)
	}
	t.posMask = uint32(uint64(1)<<bits.Len(uint(len(t.index))) - 1)
	for p := range t.recs {
		s := &t.recs[p]
		if s.rec.state == stateEmpty {
			continue
		}
		i, tag := t.slotOf(t.mix(&s.key))
		for t.index[i] != 0 {
			if i++; i == len(t.index) {
				i = 0
			}
		}
		t.index[i] = uint32(p+1) | tag
	}
}
