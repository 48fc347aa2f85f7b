package graphite

import (
	"math"
	"strconv"
	"strings"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// appendPath appends the full dotted path of a point to dst: prefix, which
// must already have been through sanitizePrefix, then the elements of path
// and of leaf (a tree.Desc's Leaf, nil for most).
func appendPath(dst []byte, prefix string, path, leaf []string) []byte {
	dst = append(dst, prefix...)
	sep := prefix != ""
	for _, elems := range [2][]string{path, leaf} {
		for _, e := range elems {
			if sep {
				dst = append(dst, '.')
			}
			dst = appendElement(dst, e)
			sep = true
		}
	}
	return dst
}

// maxExactInt is 2^53: every integer of smaller magnitude is a float64.
const maxExactInt = 1 << 53

// appendValue appends v as formatValue returns it. Counters are integers:
// they take the integer path, which writes the same digits as
// strconv.AppendFloat(dst, v, 'f', -1, 64) several times faster.
func appendValue(dst []byte, v float64) []byte {
	if v == math.Trunc(v) && v > -maxExactInt && v < maxExactInt && (v != 0 || !math.Signbit(v)) {
		return strconv.AppendInt(dst, int64(v), 10)
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// appendLine appends one plaintext line, "path value timestamp\n", to dst;
// the path is made as appendPath does.
func appendLine(dst []byte, prefix string, path, leaf []string, v float64, ts int64) []byte {
	dst = appendPath(dst, prefix, path, leaf)
	dst = append(dst, ' ')
	dst = appendValue(dst, v)
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
func appendTaggedLine(dst []byte, prefix string, s *tree.Sample, v float64, ts int64) []byte {
	dst = append(dst, prefix...)
	if prefix != "" {
		dst = append(dst, '.')
	}
	dst = appendElement(dst, strings.TrimPrefix(s.Desc.Name, namespacePrefix))
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
		dst = appendTagValue(dst, s.LabelValues[i])
	}
	dst = append(dst, ' ')
	dst = appendValue(dst, v)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '\n')
}

func finite(v float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0)
}
