package exposition

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// omSuffixes are the sample name suffixes of each OpenMetrics type, as the
// python parser reads them; a family of no TYPE is unknown.
var omSuffixes = map[string][]string{
	"counter":        {"_total", "_created"},
	"summary":        {"", "_count", "_sum", "_created"},
	"histogram":      {"_count", "_sum", "_bucket", "_created"},
	"gaugehistogram": {"_gcount", "_gsum", "_bucket"},
	"info":           {"_info"},
	"gauge":          {""},
	"stateset":       {""},
	"unknown":        {""},
}

// omFamily is one family of an OpenMetrics body as openMetricsToText reads
// it.
type omFamily struct {
	name, typ string
	help      *string
	meta      []string
	samples   int
	// Histogram state of the current label set, if open.
	open      bool
	group     string
	lastLe    float64
	lastCount float64
	infCount  float64
	hasInf    bool
	hasCount  bool
	count     float64
}

// openMetricsToText checks body against the rules of the OpenMetrics text
// format (1.0.0) that prometheus_client's strict python parser enforces
// and that matter to this renderer, more strictly where the renderer
// promises more, and returns the body in the text format 0.0.4, for
// expfmt's TextParser. The rules: the body ends with "# EOF\n" and has no
// blank line; a family's metadata (HELP, TYPE, UNIT, each once) comes
// before its samples; no family name appears twice, nor any two families
// claim one sample name (a family claims its name with the suffixes of its
// type, omSuffixes); every sample belongs to the family before it (a
// sample that would start a family of its own, detached from its HELP, is
// refused); a TYPE line never says unknown (no TYPE line means unknown,
// and Prometheus's text parser refuses the word); counter totals, histogram
// buckets, counts and sums are neither NaN nor negative, buckets and
// counts are integers, buckets have an le label, increase with it, end
// with +Inf, whose value is the count.
//
// The transformation: # EOF and UNIT lines are dropped, the HELP and TYPE
// lines of a counter family foo are written for foo_total, its samples'
// name; everything else is the same in both formats (values such as 1.0
// and le="1.0" read the same).
func openMetricsToText(body []byte) ([]byte, error) {
	text, ok := bytes.CutSuffix(body, []byte("# EOF\n"))
	if !ok {
		return nil, fmt.Errorf("the body does not end with # EOF")
	}
	if len(text) > 0 && text[len(text)-1] != '\n' {
		return nil, fmt.Errorf("no line feed before # EOF")
	}
	var out bytes.Buffer
	claimed := make(map[string]string)
	seen := make(map[string]bool)
	var cur *omFamily
	closeFamily := func() error {
		if cur == nil {
			return nil
		}
		if err := cur.endGroup(); err != nil {
			return err
		}
		for _, s := range omSuffixes[cur.typ] {
			if by, ok := claimed[cur.name+s]; ok {
				return fmt.Errorf("families %s and %s both claim the name %s", by, cur.name, cur.name+s)
			}
			claimed[cur.name+s] = cur.name
		}
		cur.flushMeta(&out)
		cur = nil
		return nil
	}
	lines := strings.Split(string(text), "\n")
	lines = lines[:len(lines)-1]
	for i, line := range lines {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(format, args...))
		}
		if line == "" {
			return nil, fail("blank line")
		}
		if line == "# EOF" {
			return nil, fail("# EOF before the end")
		}
		if strings.HasPrefix(line, "#") {
			parts := strings.SplitN(line, " ", 4)
			if len(parts) < 4 || parts[0] != "#" {
				return nil, fail("not a metadata line")
			}
			kw, name, rest := parts[1], parts[2], parts[3]
			if cur == nil || cur.name != name {
				if err := closeFamily(); err != nil {
					return nil, fail("%v", err)
				}
				if seen[name] {
					return nil, fail("family %s again", name)
				}
				seen[name] = true
				cur = &omFamily{name: name, typ: "unknown"}
			} else if cur.samples > 0 {
				return nil, fail("metadata after samples")
			}
			switch kw {
			case "HELP":
				if cur.help != nil {
					return nil, fail("second HELP")
				}
				cur.help = &rest
			case "TYPE":
				if cur.typ != "unknown" || slices.Contains(cur.meta, "TYPE") {
					return nil, fail("second TYPE")
				}
				if _, ok := omSuffixes[rest]; !ok || rest == "unknown" {
					return nil, fail("TYPE %s", rest)
				}
				cur.typ = rest
			case "UNIT":
				if slices.Contains(cur.meta, "UNIT") {
					return nil, fail("second UNIT")
				}
				if rest != "" && !strings.HasSuffix(name, "_"+rest) {
					return nil, fail("unit %s not the suffix of the name", rest)
				}
			default:
				return nil, fail("keyword %s", kw)
			}
			cur.meta = append(cur.meta, kw)
			continue
		}
		name, labels, value, err := splitSample(line)
		if err != nil {
			return nil, fail("%v", err)
		}
		if cur == nil || !slices.Contains(omSuffixes[cur.typ], strings.TrimPrefix(name, cur.name)) || !strings.HasPrefix(name, cur.name) {
			return nil, fail("sample outside its family")
		}
		if cur.samples == 0 {
			cur.flushMeta(&out)
		}
		cur.samples++
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fail("value: %v", err)
		}
		suffix := name[len(cur.name):]
		switch {
		case cur.typ == "counter" || (cur.typ == "histogram" && suffix != "_bucket"):
			if math.IsNaN(v) || v < 0 {
				return nil, fail("a counter-like sample is %v", v)
			}
		}
		if cur.typ == "histogram" {
			if err := cur.histogramSample(suffix, labels, v); err != nil {
				return nil, fail("%v", err)
			}
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if err := closeFamily(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// flushMeta writes the family's HELP and TYPE lines in the text format,
// once.
func (f *omFamily) flushMeta(out *bytes.Buffer) {
	if f.meta == nil {
		return
	}
	name := f.name
	if f.typ == "counter" {
		name += "_total"
	}
	if f.help != nil {
		fmt.Fprintf(out, "# HELP %s %s\n", name, *f.help)
	}
	if f.typ != "unknown" {
		fmt.Fprintf(out, "# TYPE %s %s\n", name, f.typ)
	}
	f.meta = nil
}

// histogramSample checks one sample of a histogram, in order.
func (f *omFamily) histogramSample(suffix, labels string, v float64) error {
	group := labels
	if suffix == "_bucket" {
		var le string
		var ok bool
		group, le, ok = cutLe(labels)
		if !ok {
			return fmt.Errorf("a bucket without le")
		}
		if !f.open || group != f.group {
			if err := f.endGroup(); err != nil {
				return err
			}
			f.open, f.group, f.lastLe, f.lastCount, f.hasInf, f.hasCount = true, group, math.Inf(-1), 0, false, false
		}
		b, err := strconv.ParseFloat(le, 64)
		if err != nil || math.IsNaN(b) || (math.IsInf(b, 1) && le != "+Inf") {
			return fmt.Errorf("le %q", le)
		}
		if b <= f.lastLe || v < f.lastCount || v != math.Trunc(v) || v < 0 {
			return fmt.Errorf("bucket %s holds %v after %v", le, v, f.lastCount)
		}
		f.lastLe, f.lastCount = b, v
		if math.IsInf(b, 1) {
			f.hasInf, f.infCount = true, v
		}
		return nil
	}
	if !f.open || group != f.group {
		return fmt.Errorf("%s of another label set than the buckets before", suffix)
	}
	if suffix == "_count" {
		if v != math.Trunc(v) {
			return fmt.Errorf("count %v", v)
		}
		f.hasCount, f.count = true, v
	}
	return nil
}

// endGroup checks the histogram series just read.
func (f *omFamily) endGroup() error {
	if !f.open {
		return nil
	}
	if !f.hasInf {
		return fmt.Errorf("histogram %s{%s} has no +Inf bucket", f.name, f.group)
	}
	if f.hasCount && f.count != f.infCount {
		return fmt.Errorf("histogram %s{%s}: count %v, +Inf bucket %v", f.name, f.group, f.count, f.infCount)
	}
	return nil
}

// splitSample splits a sample line into its name, the text between its
// braces and its value; it has no timestamp or exemplar.
func splitSample(line string) (name, labels, value string, err error) {
	if i := strings.IndexByte(line, '{'); i >= 0 && i < strings.IndexByte(line, ' ') {
		name = line[:i]
		j := i + 1
		for inQuote := false; j < len(line); j++ {
			switch c := line[j]; {
			case c == '\\' && inQuote:
				j++
			case c == '"':
				inQuote = !inQuote
			case c == '}' && !inQuote:
				labels = line[i+1 : j]
				rest, ok := strings.CutPrefix(line[j+1:], " ")
				if !ok || strings.Contains(rest, " ") {
					return "", "", "", fmt.Errorf("not name{labels} value")
				}
				return name, labels, rest, nil
			}
		}
		return "", "", "", fmt.Errorf("labels do not end")
	}
	name, value, ok := strings.Cut(line, " ")
	if !ok || strings.Contains(value, " ") {
		return "", "", "", fmt.Errorf("not name value")
	}
	return name, "", value, nil
}

// cutLe removes the le label, which the renderer writes last, from labels.
func cutLe(labels string) (rest, le string, ok bool) {
	i := strings.LastIndex(labels, `le="`)
	if i < 0 || (i > 0 && labels[i-1] != ',') || !strings.HasSuffix(labels, `"`) {
		return labels, "", false
	}
	return strings.TrimSuffix(labels[:i], ","), labels[i+4 : len(labels)-1], true
}
