package graphite

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// DefaultEscapeChar is the character that replaces, by default, every
// character Graphite cannot take in a path element.
const DefaultEscapeChar byte = '_'

// ValidPathChar reports whether c may appear unescaped in a Graphite path
// element: an ASCII letter, a digit, '_' or '-'.
func ValidPathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '_' || c == '-':
		return true
	}
	return false
}

// appendElement appends e to dst with every character outside [A-Za-z0-9_-]
// replaced by esc. A multi-byte UTF-8 character, and every byte of an invalid
// UTF-8 sequence, becomes a single esc. An empty element becomes esc, so it
// still makes a level of its own.
func appendElement(dst []byte, e string, esc byte) []byte {
	if e == "" {
		return append(dst, esc)
	}
	for i := 0; i < len(e); {
		c := e[i]
		if c < utf8.RuneSelf {
			if ValidPathChar(c) {
				dst = append(dst, c)
			} else {
				dst = append(dst, esc)
			}
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(e[i:])
		dst = append(dst, esc)
		i += size
	}
	return dst
}

// EscapeElement returns e as one Graphite path element: every character
// outside [A-Za-z0-9_-] is replaced by esc, and an empty element becomes esc.
func EscapeElement(e string, esc byte) string {
	return string(appendElement(make([]byte, 0, len(e)+1), e, esc))
}

// SanitizePrefix returns prefix made safe for Graphite. The prefix may hold
// several levels separated by dots; each level is escaped as EscapeElement
// does, and empty levels (leading, trailing or doubled dots) are dropped. The
// result is empty when prefix has no level at all.
func SanitizePrefix(prefix string, esc byte) string {
	var b []byte
	for elem := range strings.SplitSeq(prefix, ".") {
		if elem == "" {
			continue
		}
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = appendElement(b, elem, esc)
	}
	return string(b)
}

// appendPath appends the full dotted path of a point to dst. prefix must
// already have been through SanitizePrefix.
func appendPath(dst []byte, prefix string, path []string, esc byte) []byte {
	dst = append(dst, prefix...)
	for i, e := range path {
		if i > 0 || prefix != "" {
			dst = append(dst, '.')
		}
		dst = appendElement(dst, e, esc)
	}
	return dst
}

// FormatPath returns the Graphite path of a point: the sanitised prefix
// followed by one escaped level per element of path, separated by dots.
func FormatPath(prefix string, path []string, esc byte) string {
	return string(appendPath(nil, SanitizePrefix(prefix, esc), path, esc))
}

// FormatValue returns v as carbon expects it: integers without exponent or
// decimals, other values with the fewest digits that represent them exactly.
// It must not be called with NaN or an infinity, which Graphite cannot store.
func FormatValue(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// appendLine appends one plaintext line, "path value timestamp\n", to dst.
// prefix must already have been through SanitizePrefix.
func appendLine(dst []byte, prefix string, path []string, v float64, ts int64, esc byte) []byte {
	dst = appendPath(dst, prefix, path, esc)
	dst = append(dst, ' ')
	dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '\n')
}

// namespacePrefix is left off Prometheus names in tagged series, where the
// Graphite prefix stands for it.
const namespacePrefix = "netfilter_"

// tagName returns the Graphite tag a label is sent as. Graphite reserves the
// tag "name" for the series name, so a label called name (the nfacct object
// name) is sent as "object".
func tagName(label string) string {
	if label == "name" {
		return "object"
	}
	return label
}

// appendTaggedLine appends one Graphite 1.1 tagged line,
// "prefix.name;tag=value;... value timestamp\n", to dst. Tags are the
// sample's labels (see tagName) in tag order, as carbon stores them; a label
// with an empty value is left out, as Prometheus treats it as absent.
func appendTaggedLine(dst []byte, prefix string, s *tree.Sample, v float64, ts int64, esc byte) []byte {
	dst = append(dst, prefix...)
	if prefix != "" {
		dst = append(dst, '.')
	}
	dst = appendElement(dst, strings.TrimPrefix(s.Desc.Name, namespacePrefix), esc)
	// Insertion sort of label indices: few labels, no allocation.
	var idx [16]int
	n := min(len(s.Desc.Labels), len(s.LabelValues), len(idx))
	for i := 0; i < n; i++ {
		j := i
		for ; j > 0 && tagName(s.Desc.Labels[idx[j-1]]) > tagName(s.Desc.Labels[i]); j-- {
			idx[j] = idx[j-1]
		}
		idx[j] = i
	}
	for _, i := range idx[:n] {
		if s.LabelValues[i] == "" {
			continue
		}
		dst = append(dst, ';')
		dst = append(dst, tagName(s.Desc.Labels[i])...)
		dst = append(dst, '=')
		dst = appendTagValue(dst, s.LabelValues[i], esc)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '\n')
}

// appendTagValue appends a tag value with the characters Graphite forbids
// in one (';', a leading '~') and those that would break the line
// (whitespace, control and non-ASCII characters) replaced by esc.
func appendTagValue(dst []byte, v string, esc byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == ';' || (i == 0 && c == '~') {
			c = esc
		}
		dst = append(dst, c)
	}
	return dst
}

// FormatLine returns the plaintext line of one point, terminated by a newline.
// prefix is sanitised as SanitizePrefix does. ok is false, and the line empty,
// when v is NaN or infinite or when path has no element.
func FormatLine(prefix string, path []string, v float64, ts int64, esc byte) (line string, ok bool) {
	if !finite(v) || len(path) == 0 {
		return "", false
	}
	return string(appendLine(nil, SanitizePrefix(prefix, esc), path, v, ts, esc)), true
}

func finite(v float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0)
}

// deltaEntry is the value a counter path had at the previous snapshot.
type deltaEntry struct {
	value float64
	// gen is the generation of the last snapshot that held the path.
	gen uint64
}

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
	path  []string // the path of the sample being formatted
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
		// The whole path: the sample's own, then its Desc's leaf.
		f.path = s.AppendGraphitePath(f.path[:0])
		if f.mode == Delta && s.Desc != nil && s.Desc.Kind == tree.Counter {
			var ok bool
			if v, ok = f.delta(f.path, v); !ok {
				continue
			}
		}
		if f.tagged && s.Desc != nil {
			f.buf = appendTaggedLine(f.buf, f.prefix, s, v, ts, f.esc)
		} else {
			f.buf = appendLine(f.buf, f.prefix, f.path, v, ts, f.esc)
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
