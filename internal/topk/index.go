package topk

// index finds a bucket's entries by key: open addressing with linear
// probing over a power-of-two table of at least twice the bucket's
// capacity, so that at most half its slots are in use and probes stay
// short. A slot holds the upper 32 bits of its key's hash, which give the
// key's home slot and tell most other keys apart without reading their
// entry, and the entry's position plus one; 0 is an empty slot. It takes
// the place of a Go map, whose insert and delete for every new key were
// most of the cost of a bucket over its capacity: here a new key costs a
// probe and a store, an evicted one a probe and a backward shift, and
// clearing a bucket clears one slice.
type index struct {
	slots []uint64
	mask  uint32
}

// newIndex returns an empty index for up to capacity entries.
func newIndex(capacity int) index {
	size := 16
	for size < 2*capacity {
		size <<= 1
	}
	return index{slots: make([]uint64, size), mask: uint32(size - 1)}
}

// slotOf packs hash h and position pos into a slot.
func slotOf(h uint32, pos int32) uint64 {
	return uint64(h)<<32 | uint64(uint32(pos)+1)
}

// lookup finds key, of hash h, among es: it returns the slot that holds it
// and its position, or, when no slot does, the empty slot where it would
// go and false.
func lookup[K comparable](x *index, es []entry[K], key K, h uint32) (slot uint32, pos int32, ok bool) {
	for s := h & x.mask; ; s = (s + 1) & x.mask {
		v := x.slots[s]
		if v == 0 {
			return s, -1, false
		}
		if uint32(v>>32) == h {
			if p := int32(uint32(v)) - 1; es[p].key == key {
				return s, p, true
			}
		}
	}
}

// slotAt returns the slot that holds position pos, whose key's hash is h:
// it reads no entry.
func (x *index) slotAt(h uint32, pos int32) uint32 {
	want := uint64(uint32(pos) + 1)
	s := h & x.mask
	for x.slots[s]&0xffffffff != want {
		s = (s + 1) & x.mask
	}
	return s
}

// set makes slot s hold the key of hash h at position pos.
func (x *index) set(s, h uint32, pos int32) {
	x.slots[s] = slotOf(h, pos)
}

// remove empties slot s, and moves back the slots after it that probing
// from their home would no longer reach (backward-shift deletion, so that
// no tombstone lengthens later probes).
func (x *index) remove(s uint32) {
	for {
		x.slots[s] = 0
		j := s
		for {
			j = (j + 1) & x.mask
			v := x.slots[j]
			if v == 0 {
				return
			}
			// The slot at j may fill the hole at s unless its home
			// lies cyclically in (s, j].
			home := uint32(v>>32) & x.mask
			if (j > s && (home <= s || home > j)) || (j < s && home <= s && home > j) {
				x.slots[s] = v
				s = j
				break
			}
		}
	}
}

// reset empties the index.
func (x *index) reset() {
	clear(x.slots)
}
