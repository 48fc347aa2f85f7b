package graphite

// pathSet is a set of 64-bit hashes of paths: an open-addressing table with
// linear probing, at most half full, emptied for every snapshot. It does in
// one probe what a map needs a lookup and an insert for, over one flat
// slice: a snapshot of 500,000 points takes 8 MiB.
type pathSet struct {
	slots []uint64 // 0 is an empty slot; a hash of 0 is stored as 1
	n     int
}

// reset empties the set, keeping its memory.
func (s *pathSet) reset() {
	clear(s.slots)
	s.n = 0
}

// add adds h and reports whether it was not in the set yet.
func (s *pathSet) add(h uint64) bool {
	if h == 0 {
		h = 1
	}
	if 2*(s.n+1) > len(s.slots) {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case 0:
			s.slots[i] = h
			s.n++
			return true
		case h:
			return false
		}
	}
}

// grow doubles the table (1,024 slots at first) and adds the hashes again.
func (s *pathSet) grow() {
	old := s.slots
	s.slots = make([]uint64, max(1024, 2*len(old)))
	s.n = 0
	for _, h := range old {
		if h != 0 {
			s.add(h)
		}
	}
}
