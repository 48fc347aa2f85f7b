package graphite

import (
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// formatter turns snapshots into plaintext lines. It keeps, in Delta mode, the
// previous value of every counter path, so it must be used by one goroutine
// at a time and see the snapshots in order.
type formatter struct {
	prefix string // already sanitised
	esc    byte
	mode   Mode
	tagged bool

	gen   uint64
	prev  map[string]*deltaEntry
	key   []byte
	buf   []byte
	ends  []int
	lines []string
}

func newFormatter(prefix string, esc byte, mode Mode) *formatter {
	f := &formatter{prefix: SanitizePrefix(prefix, esc), esc: esc, mode: mode}
	if mode == Delta {
		f.prev = make(map[string]*deltaEntry)
	}
	return f
}

// sendable reports whether s goes to Graphite at all: histograms and samples
// without path elements do not. A zero-length Path would name the prefix
// itself, which is a branch of the hierarchy, not a series.
func sendable(s *tree.Sample) bool {
	if len(s.Path) == 0 || s.Histogram != nil {
		return false
	}
	return s.Desc == nil || s.Desc.Kind != tree.Histogram
}

// format returns the lines of snap, in the order of its samples. The lines
// share one backing allocation; the returned slice is reused by the next call,
// the strings in it are not. Samples without a path, histograms and NaN or
// infinite values are skipped, and in Delta mode so is the first sighting of
// a counter path. A sample with a nil Desc is sent as a gauge.
func (f *formatter) format(snap *tree.Snapshot) []string {
	f.buf = f.buf[:0]
	f.ends = f.ends[:0]
	clear(f.lines)
	f.lines = f.lines[:0]
	if snap == nil {
		return nil
	}
	ts := snap.Time.Unix()
	f.gen++
	for i := range snap.Samples {
		s := &snap.Samples[i]
		if !sendable(s) || !finite(s.Value) {
			continue
		}
		v := s.Value
		if f.mode == Delta && s.Desc != nil && s.Desc.Kind == tree.Counter {
			var ok bool
			if v, ok = f.delta(s.Path, v); !ok {
				continue
			}
		}
		if f.tagged && s.Desc != nil {
			f.buf = appendTaggedLine(f.buf, f.prefix, s, v, ts, f.esc)
		} else {
			f.buf = appendLine(f.buf, f.prefix, s.Path, v, ts, f.esc)
		}
		f.ends = append(f.ends, len(f.buf))
	}
	if f.mode == Delta {
		for k, e := range f.prev {
			if e.gen != f.gen {
				delete(f.prev, k)
			}
		}
	}
	if len(f.ends) == 0 {
		return nil
	}
	all := string(f.buf)
	start := 0
	for _, end := range f.ends {
		f.lines = append(f.lines, all[start:end])
		start = end
	}
	return f.lines
}
