package graphite

import (
	"strconv"
)

// deltas holds, for Delta mode, what every counter path had at the previous
// snapshot: the baselines from which increases are computed.
type deltas struct {
	// gen is the generation of the snapshot being formatted.
	gen  uint64
	prev map[string]*deltaEntry
	key  []byte
}

// deltaEntry is what a counter path had at the last snapshot that held it.
type deltaEntry struct {
	value float64
	// sent is what was sent for the path at that snapshot, and sentOK
	// whether anything was.
	sent   float64
	sentOK bool
	// gen is the generation of that snapshot.
	gen uint64
}

func newDeltas() *deltas {
	return &deltas{prev: make(map[string]*deltaEntry)}
}

// begin starts a new snapshot.
func (d *deltas) begin() { d.gen++ }

// end forgets the paths the snapshot did not hold: a path that comes back
// has no baseline.
func (d *deltas) end() {
	for k, e := range d.prev {
		if e.gen != d.gen {
			delete(d.prev, k)
		}
	}
}

// next returns what to send for the counter at path and leaf (see
// appendPath) now that its value is v: the increase since the previous
// snapshot, or v itself when the counter went down. ok is false the first
// time the path is seen, when there is no baseline yet. With final, the
// increase is counted from the snapshot before the previous one instead:
// what was sent at the previous snapshot plus the increase since.
func (d *deltas) next(path, leaf []string, v float64, final bool) (float64, bool) {
	// The key encodes the raw elements with their lengths: two different
	// lists of elements never share a baseline, whatever the escaping.
	d.key = d.key[:0]
	for _, elems := range [2][]string{path, leaf} {
		for _, e := range elems {
			d.key = strconv.AppendInt(d.key, int64(len(e)), 10)
			d.key = append(d.key, ':')
			d.key = append(d.key, e...)
		}
	}
	e, seen := d.prev[string(d.key)]
	if !seen {
		d.prev[string(d.key)] = &deltaEntry{value: v, gen: d.gen}
		return 0, false
	}
	if e.gen == d.gen {
		// The same path twice in one snapshot is a collector bug; a
		// difference between two objects would be meaningless, so the
		// second one is not sent.
		return 0, false
	}
	inc := v - e.value
	if v < e.value {
		inc = v
	}
	out := inc
	if final && e.sentOK {
		out += e.sent
	}
	e.value, e.sent, e.sentOK, e.gen = v, out, true, d.gen
	return out, true
}
