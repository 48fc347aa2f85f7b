package graphite

import (
	"bytes"
	"hash/maphash"
	"sync/atomic"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// lineSink receives formatted lines. A batch is one; the line is only valid
// during the call.
type lineSink interface {
	add(line []byte)
}

// formatter turns snapshots into plaintext lines. In Delta mode it keeps the
// previous value of every counter path, so it must be used by one goroutine
// at a time and see the snapshots in order.
type formatter struct {
	prefix string // already sanitised
	mode   Mode
	tagged bool

	deltas *deltas // nil in Cumulative mode
	line   []byte
	// lastTime is the timestamp of the last snapshot formatted, and
	// formatted whether there was one.
	lastTime  int64
	formatted bool

	// seen holds a hash (seed) of every path written for the snapshot
	// being formatted, to find the paths that two of its samples share.
	seed maphash.Seed
	seen pathSet
	// collisions is the number of points the latest snapshot left out
	// because an earlier point of it had the same path; collided is the
	// first such path ever, "" until there is one. They are read by other
	// goroutines (the metrics) and by the Writer's log.
	collisions atomic.Int64
	collided   atomic.Pointer[string]
}

func newFormatter(prefix string, mode Mode) *formatter {
	f := &formatter{prefix: sanitizePrefix(prefix), mode: mode, seed: maphash.MakeSeed()}
	if mode == Delta {
		f.deltas = newDeltas()
	}
	return f
}

// leaf returns the elements that end the Graphite path of s after its Path
// (tree.Desc.Leaf), nil for most samples.
func leaf(s *tree.Sample) []string {
	if s.Desc == nil {
		return nil
	}
	return s.Desc.Leaf
}

// sendable reports whether s goes to Graphite at all: histograms, samples
// with a nil Path and samples without path elements do not. A path without
// elements would name the prefix itself, which is a branch of the
// hierarchy, not a series.
func sendable(s *tree.Sample) bool {
	if s.Path == nil || len(s.Path)+len(leaf(s)) == 0 || s.Histogram != nil {
		return false
	}
	return s.Desc == nil || s.Desc.Kind != tree.Histogram
}

// format writes the lines of snap to out, in the order of its samples, and
// returns how many it wrote. Samples without a path, histograms and NaN or
// infinite values are skipped, and in Delta mode so is the first sighting of
// a counter path. A sample with a nil Desc is sent as a gauge.
func (f *formatter) format(snap *tree.Snapshot, out lineSink) int {
	if snap == nil {
		return 0
	}
	ts := snap.Time.Unix()
	n := f.write(snap, ts, out, false)
	f.lastTime, f.formatted = ts, true
	return n
}

// formatFinal writes the lines of the last snapshot before the Writer stops.
// In Cumulative mode it is format. In Delta mode the lines carry the
// timestamp of the previous snapshot, and each counter the increase since
// the snapshot before that one: the point replaces, in carbon, the one sent
// for the previous snapshot, and adds to it what was counted since, so that
// nothing counted before the stop is lost and nothing is counted twice,
// whatever the step of the whisper archive. Without a previous snapshot,
// formatFinal is format.
func (f *formatter) formatFinal(snap *tree.Snapshot, out lineSink) int {
	if snap == nil || f.mode != Delta || !f.formatted {
		return f.format(snap, out)
	}
	return f.write(snap, f.lastTime, out, true)
}

// write writes the lines of snap stamped ts; final selects the deltas of
// formatFinal.
func (f *formatter) write(snap *tree.Snapshot, ts int64, out lineSink, final bool) int {
	if f.deltas != nil {
		f.deltas.begin()
	}
	f.seen.reset()
	n, collisions := 0, 0
	for s := range snap.All() {
		if !sendable(s) || !finite(s.Value) {
			continue
		}
		v := s.Value
		if f.deltas != nil && s.Desc != nil && s.Desc.Kind == tree.Counter {
			var ok bool
			if v, ok = f.deltas.next(s.Path, leaf(s), v, final); !ok {
				continue
			}
		}
		if f.tagged && s.Desc != nil {
			f.line = appendTaggedLine(f.line[:0], f.prefix, s, v, ts)
		} else {
			f.line = appendLine(f.line[:0], f.prefix, s.Path, leaf(s), v, ts)
		}
		if f.collides(f.line) {
			collisions++
			continue
		}
		out.add(f.line)
		n++
	}
	if f.deltas != nil {
		f.deltas.end()
	}
	f.collisions.Store(int64(collisions))
	return n
}

// collides reports whether the path of line was already written for the
// snapshot being formatted, and remembers it otherwise. Escaping is
// injective (see appendElement), so two samples share a path only when their
// elements are the same, which is a collector's mistake: the first one is
// sent, the others are left out, and carbon never gets two values for one
// path and timestamp. Paths are compared by a 64-bit hash: two different
// paths are taken for one with a chance of about n²/2⁶⁵ for n points
// (3·10⁻⁸ per snapshot of a million points), and then the second is left
// out.
func (f *formatter) collides(line []byte) bool {
	path := line
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		path = line[:i]
	}
	if f.seen.add(maphash.Bytes(f.seed, path)) {
		return false
	}
	if f.collided.Load() == nil {
		p := string(path)
		f.collided.Store(&p)
	}
	return true
}
