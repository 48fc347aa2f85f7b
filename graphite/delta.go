package graphite

import (
	"strconv"
)

// deltaEntry is the value a counter path had at the previous snapshot.
type deltaEntry struct {
	value float64
	// gen is the generation of the last snapshot that held the path.
	gen uint64
}

// delta returns what to send for counter path now that its value is v: the
// increase since the previous snapshot, or v itself when the counter went
// down. ok is false the first time the path is seen, when there is no
// baseline yet.
func (f *formatter) delta(path []string, v float64) (d float64, ok bool) {
	// The key encodes the raw elements with their lengths, so that two paths
	// that escape to the same string keep separate baselines.
	f.key = f.key[:0]
	for _, e := range path {
		f.key = strconv.AppendInt(f.key, int64(len(e)), 10)
		f.key = append(f.key, ':')
		f.key = append(f.key, e...)
	}
	e, seen := f.prev[string(f.key)]
	if !seen {
		f.prev[string(f.key)] = &deltaEntry{value: v, gen: f.gen}
		return 0, false
	}
	if e.gen == f.gen {
		// The same path twice in one snapshot is a collector bug; a
		// difference between two objects would be meaningless, so the
		// second one is not sent.
		return 0, false
	}
	prev := e.value
	e.value, e.gen = v, f.gen
	if v < prev {
		return v, true
	}
	return v - prev, true
}
