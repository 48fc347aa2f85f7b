package prometheus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// Format is an exposition format the renderer writes.
type Format uint8

// The formats a scrape can negotiate.
const (
	// Text is the Prometheus text format, version 0.0.4.
	Text Format = iota
	// OpenMetrics is the OpenMetrics text format, version 1.0.0.
	OpenMetrics
)

// String returns the name of the format.
func (f Format) String() string {
	if f == OpenMetrics {
		return "openmetrics"
	}
	return "text"
}

var (
	errSample = errors.New("sample left out")
	errFamily = errors.New("metric family left out")
)

// chunkSize is how much rendered text is handed to the writer at a time.
const chunkSize = 64 << 10

// family is one metric family of a snapshot: its description and the
// indexes of its samples, in snapshot order. Samples of several
// descriptions of the same name, kind and help make one family.
type family struct {
	desc *tree.Desc
	// samples indexes the snapshot's samples of the family.
	samples []int32
	// tables holds the columns of the snapshot's tables that belong to
	// the family, table by table, in snapshot order.
	tables []tableCols
	// omName is the family's name in OpenMetrics: without _total for a
	// counter.
	omName string
	// n counts the samples of the family while they are grouped, tableN
	// those of its tables.
	n, tableN int
}

// table is a table of the snapshot as the renderer writes it.
type table struct {
	t *tree.Table
	// bad marks the rows left out, nBad counts them and err says why
	// the first was; bad is nil when there is none.
	bad  []bool
	nBad int
	err  error
}

// tableCols are the columns of one table that belong to one family, in
// column order.
type tableCols struct {
	tab  *table
	cols []tableCol
}

// tableCol is a column of a table and how its labels are written.
type tableCol struct {
	i int
	// How the column's fixed labels join the row's: written before
	// them (fixedFirst), after them (fixedLast), or label by label in
	// name order (mixed: they interleave, and the row's cached text
	// cannot be used).
	join int
	// fixed is the text of the fixed labels, name="value" pairs in name
	// order.
	fixed []byte
}

// The ways a column's fixed labels join the row's.
const (
	fixedFirst = iota
	fixedLast
	mixed
)

// renderer writes one snapshot and the registry's families in one format.
// It keeps a chunk of rendered text and hands it to w when full.
type renderer struct {
	w      io.Writer
	format Format
	buf    []byte
	err    error
	// problems collects what was left out, for the caller to log; n
	// counts it.
	problems []error
	n        int
	// orders holds, per description, its label indexes sorted by label
	// name: labels are written in the order client_golang writes them.
	orders    map[*tree.Desc][]int
	lastDesc  *tree.Desc
	lastOrder []int
}

// flush hands the buffered text to w.
func (r *renderer) flush() {
	if r.err == nil && len(r.buf) > 0 {
		_, r.err = r.w.Write(r.buf)
	}
	r.buf = r.buf[:0]
}

// maybeFlush flushes once the buffer holds a chunk.
func (r *renderer) maybeFlush() {
	if len(r.buf) >= chunkSize {
		r.flush()
	}
}

// problem records something left out of the output. Only the first few are
// kept; the rest are counted.
func (r *renderer) problem(err error) {
	r.problemN(err, 1)
}

// problemN records n samples left out for one reason.
func (r *renderer) problemN(err error, n int) {
	if len(r.problems) < 10 {
		r.problems = append(r.problems, err)
	}
	r.n += n
}

// leftOut is what a rendering left out: how many samples and families, and
// the first few reasons.
type leftOut struct {
	n   int
	err error
}

// render writes the families of the registry, then those of snap, then, for
// OpenMetrics, the closing # EOF line. A family of the registry whose name
// the snapshot also has is left out: each family appears once.
func render(w io.Writer, format Format, reg []*dto.MetricFamily, snap *tree.Snapshot) (leftOut, error) {
	r := &renderer{w: w, format: format, buf: make([]byte, 0, chunkSize+4096), orders: make(map[*tree.Desc][]int)}
	fams := groupFamilies(snap, r)
	names := make(map[string]bool, len(fams))
	for _, f := range fams {
		names[f.desc.Name] = true
	}
	if len(reg) > 0 {
		encFormat := expfmt.NewFormat(expfmt.TypeTextPlain)
		if format == OpenMetrics {
			encFormat = expfmt.NewFormat(expfmt.TypeOpenMetrics)
		}
		enc := expfmt.NewEncoder(bufWriter{r}, encFormat)
		for _, mf := range reg {
			if names[mf.GetName()] {
				r.problem(fmt.Errorf("%w: %s is served by a collector and by the registry; the registry's is left out", errFamily, mf.GetName()))
				continue
			}
			if err := enc.Encode(mf); err != nil {
				r.problem(fmt.Errorf("%w: encoding %s: %w", errFamily, mf.GetName(), err))
			}
			r.maybeFlush()
		}
		// The encoder is not closed: for OpenMetrics, closing would write
		// # EOF before the snapshot's families.
	}
	for _, f := range fams {
		r.family(snap, f)
	}
	if format == OpenMetrics {
		r.buf = append(r.buf, "# EOF\n"...)
	}
	r.flush()
	return leftOut{n: r.n, err: errors.Join(r.problems...)}, r.err
}

// bufWriter lets expfmt write into the renderer's buffer.
type bufWriter struct{ r *renderer }

func (b bufWriter) Write(p []byte) (int, error) {
	b.r.buf = append(b.r.buf, p...)
	return len(p), nil
}

// groupFamilies groups the samples of snap by family name, families sorted
// by name, samples in snapshot order. Families whose description is not
// valid, or that clash with another of the same name, are left out and
// reported to r.
func groupFamilies(snap *tree.Snapshot, r *renderer) []*family {
	if snap == nil {
		return nil
	}
	byDesc := make(map[*tree.Desc]*family)
	byName := make(map[string]*family)
	var fams []*family
	// familyOf returns the family of d, nil when it cannot be served.
	familyOf := func(d *tree.Desc) *family {
		f, ok := byDesc[d]
		if !ok {
			f = r.newFamily(d, byName)
			if f != nil && byName[d.Name] == nil {
				byName[d.Name] = f
				fams = append(fams, f)
			}
			byDesc[d] = f
		}
		return f
	}
	// of[i] is the family of sample i.
	of := make([]*family, len(snap.Samples))
	// Consecutive samples share a few descriptions: the last ones are
	// remembered, sparing most map lookups.
	var recentD [4]*tree.Desc
	var recentF [4]*family
	next := 0
	for i := range snap.Samples {
		d := snap.Samples[i].Desc
		var f *family
		found := false
		for j, rd := range recentD {
			if rd == d && d != nil {
				f, found = recentF[j], true
				break
			}
		}
		if !found {
			f = familyOf(d)
			recentD[next], recentF[next] = d, f
			next = (next + 1) % len(recentD)
		}
		if f != nil && r.validSample(&snap.Samples[i]) {
			of[i] = f
			f.n++
		}
	}
	for _, t := range snap.Tables {
		var tab *table
		for c := range t.Columns {
			if len(t.Rows) == 0 {
				break
			}
			f := familyOf(t.Columns[c].Desc)
			if f == nil {
				continue // reported by newFamily
			}
			col, err := checkColumn(t, c)
			if err != nil {
				r.problemN(err, len(t.Rows))
				continue
			}
			if tab == nil {
				tab = r.checkRows(t)
			}
			if n := len(f.tables); n == 0 || f.tables[n-1].tab != tab {
				f.tables = append(f.tables, tableCols{tab: tab})
			}
			tc := &f.tables[len(f.tables)-1]
			tc.cols = append(tc.cols, col)
			f.tableN += len(t.Rows)
		}
		if tab != nil && tab.nBad > 0 {
			// Each sample of a row left out, in every column served.
			cols := 0
			for _, f := range fams {
				for _, tc := range f.tables {
					if tc.tab == tab {
						cols += len(tc.cols)
					}
				}
			}
			r.problemN(tab.err, tab.nBad*cols)
		}
	}
	// The loops above only counted; fill every family's
	// indexes from one backing array. A family left without samples is
	// not served.
	fams = slices.DeleteFunc(fams, func(f *family) bool { return f.n == 0 && f.tableN == 0 })
	all := make([]int32, len(snap.Samples))
	off := 0
	for _, f := range fams {
		f.samples = all[off : off : off+f.n]
		off += f.n
	}
	for i, f := range of {
		if f != nil {
			f.samples = append(f.samples, int32(i))
		}
	}
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.desc.Name, b.desc.Name) })
	return fams
}

// checkColumn checks that column c of t can be served and returns how its
// labels are written.
func checkColumn(t *tree.Table, c int) (tableCol, error) {
	col := &t.Columns[c]
	d := col.Desc
	switch {
	case d.Kind != tree.Counter && d.Kind != tree.Gauge:
		return tableCol{}, fmt.Errorf("%w: %s is a %s in a table, which holds counters and gauges", errSample, d.Name, d.Kind)
	case len(col.Fixed)+len(t.Names) != len(d.Labels) || !slices.Equal(d.Labels[len(col.Fixed):], t.Names):
		return tableCol{}, fmt.Errorf("%w: %s has labels %q, a table column %d fixed values and the names %q", errSample, d.Name, d.Labels, len(col.Fixed), t.Names)
	case !validValues(col.Fixed):
		return tableCol{}, fmt.Errorf("%w: %s has a label value that is not valid UTF-8: %q", errSample, d.Name, col.Fixed)
	}
	tc := tableCol{i: c}
	if len(col.Fixed) == 0 {
		return tc, nil
	}
	// The fixed labels join the row's text whole when they all sort
	// before or all after the row's labels.
	order := labelOrder(d.Labels)
	nf := len(col.Fixed)
	first, last := true, true
	for j, i := range order {
		if (i < nf) != (j < nf) {
			first = false
		}
		if (i < nf) != (j >= len(order)-nf) {
			last = false
		}
	}
	switch {
	case first:
		tc.join = fixedFirst
	case last:
		tc.join = fixedLast
	default:
		tc.join = mixed
		return tc, nil
	}
	tc.fixed, _ = labelText(d.Labels[:nf], col.Fixed)
	return tc, nil
}

// checkRows checks the rows of t once for all its columns: the labels of
// each must be valid, and their text is rendered, once for the life of the
// Labels.
func (r *renderer) checkRows(t *tree.Table) *table {
	tab := &table{t: t}
	for i := range t.Rows {
		l := t.Rows[i].Labels
		var err error
		switch {
		case l == nil && len(t.Names) > 0:
			err = fmt.Errorf("%w: a table row has no labels for the names %q", errSample, t.Names)
		case l == nil:
		case len(l.Values()) != len(t.Names):
			err = fmt.Errorf("%w: a table row has %d label values for the names %q", errSample, len(l.Values()), t.Names)
		default:
			if _, ok := l.Text(t.Names, labelText); !ok {
				err = fmt.Errorf("%w: a table row has a label value that is not valid UTF-8: %q", errSample, l.Values())
			}
		}
		if err != nil {
			if tab.bad == nil {
				tab.bad = make([]bool, len(t.Rows))
				tab.err = err
			}
			tab.bad[i] = true
			tab.nBad++
		}
	}
	return tab
}

// newFamily checks d and returns its family, or the family already known
// under its name when d describes the same family. It returns nil, after
// reporting why, for a description that cannot be served.
func (r *renderer) newFamily(d *tree.Desc, byName map[string]*family) *family {
	if d == nil {
		r.problem(fmt.Errorf("%w: a sample has no description", errSample))
		return nil
	}
	for i, l := range d.Labels {
		if !model.LegacyValidation.IsValidLabelName(l) || strings.HasPrefix(l, "__") || (d.Kind == tree.Histogram && l == "le") {
			r.problem(fmt.Errorf("%w: %s has invalid label name %q", errFamily, d.Name, l))
			return nil
		}
		if slices.Contains(d.Labels[:i], l) {
			r.problem(fmt.Errorf("%w: %s has label %q twice", errFamily, d.Name, l))
			return nil
		}
	}
	if prev := byName[d.Name]; prev != nil {
		if prev.desc.Kind != d.Kind || prev.desc.Help != d.Help {
			r.problem(fmt.Errorf("%w: %s is described twice, differently (%s %q and %s %q)", errFamily, d.Name, prev.desc.Kind, prev.desc.Help, d.Kind, d.Help))
			return nil
		}
		return prev
	}
	if !model.LegacyValidation.IsValidMetricName(d.Name) {
		r.problem(fmt.Errorf("%w: %q is not a valid metric name", errFamily, d.Name))
		return nil
	}
	if d.Kind > tree.Histogram {
		r.problem(fmt.Errorf("%w: %s has unknown kind %s", errFamily, d.Name, d.Kind))
		return nil
	}
	f := &family{desc: d, omName: d.Name}
	if d.Kind == tree.Counter {
		f.omName = strings.TrimSuffix(d.Name, "_total")
	}
	return f
}

// labelOrder returns the indexes of labels sorted by label name.
func labelOrder(labels []string) []int {
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return order
}

// family writes the header and the samples of f.
func (r *renderer) family(snap *tree.Snapshot, f *family) {
	d := f.desc
	name := d.Name
	if r.format == OpenMetrics {
		name = f.omName
	}
	r.buf = append(r.buf, "# HELP "...)
	r.buf = append(r.buf, name...)
	r.buf = append(r.buf, ' ')
	r.buf = appendHelp(r.buf, d.Help, r.format == OpenMetrics)
	r.buf = append(r.buf, "\n# TYPE "...)
	r.buf = append(r.buf, name...)
	switch d.Kind {
	case tree.Counter:
		if r.format == OpenMetrics && name == d.Name {
			// OpenMetrics counters end in _total; a counter that does
			// not is served as unknown, as client_golang does.
			r.buf = append(r.buf, " unknown\n"...)
		} else {
			r.buf = append(r.buf, " counter\n"...)
		}
	case tree.Gauge:
		r.buf = append(r.buf, " gauge\n"...)
	case tree.Histogram:
		r.buf = append(r.buf, " histogram\n"...)
	}
	for _, i := range f.samples {
		s := &snap.Samples[i]
		if d.Kind == tree.Histogram {
			r.histogram(d, s)
		} else {
			r.buf = append(r.buf, d.Name...)
			r.buf = r.appendLabels(r.buf, s, "")
			r.buf = append(r.buf, ' ')
			r.buf = r.appendValue(r.buf, s.Value)
			r.buf = append(r.buf, '\n')
		}
		r.maybeFlush()
	}
	for _, tc := range f.tables {
		r.tableColumns(tc)
	}
}

// tableColumns writes the samples of some columns of a table, row by row.
func (r *renderer) tableColumns(tc tableCols) {
	t := tc.tab.t
	nc := len(t.Columns)
	for row := range t.Rows {
		if tc.tab.bad != nil && tc.tab.bad[row] {
			continue
		}
		var text []byte
		if l := t.Rows[row].Labels; l != nil {
			text, _ = l.Text(t.Names, labelText)
		}
		for _, col := range tc.cols {
			c := &t.Columns[col.i]
			r.buf = append(r.buf, c.Desc.Name...)
			switch {
			case col.join == mixed:
				s := tree.Sample{Desc: c.Desc, LabelValues: append(slices.Clip(c.Fixed), t.Rows[row].Labels.Values()...)}
				r.buf = r.appendLabels(r.buf, &s, "")
			case len(col.fixed) == 0 && len(text) == 0:
			case len(col.fixed) == 0:
				r.buf = append(r.buf, '{')
				r.buf = append(r.buf, text...)
				r.buf = append(r.buf, '}')
			default:
				r.buf = append(r.buf, '{')
				if col.join == fixedLast && len(text) > 0 {
					r.buf = append(r.buf, text...)
					r.buf = append(r.buf, ',')
				}
				r.buf = append(r.buf, col.fixed...)
				if col.join == fixedFirst && len(text) > 0 {
					r.buf = append(r.buf, ',')
					r.buf = append(r.buf, text...)
				}
				r.buf = append(r.buf, '}')
			}
			r.buf = append(r.buf, ' ')
			r.buf = r.appendValue(r.buf, t.Values[row*nc+col.i])
			r.buf = append(r.buf, '\n')
		}
		r.maybeFlush()
	}
}

// histogram writes the buckets, sum and count of one histogram sample.
func (r *renderer) histogram(d *tree.Desc, s *tree.Sample) {
	h := s.Histogram
	bounds := make([]float64, 0, len(h.Buckets)+1)
	for b := range h.Buckets {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	var le []byte
	infSeen := false
	for _, b := range bounds {
		le = appendLe(le[:0], b, r.format)
		r.lineStart(d.Name, "_bucket", s, string(le))
		r.buf = append(r.appendCount(r.buf, h.Buckets[b]), '\n')
		if math.IsInf(b, +1) {
			infSeen = true
		}
	}
	if !infSeen {
		r.lineStart(d.Name, "_bucket", s, "+Inf")
		r.buf = append(r.appendCount(r.buf, h.Count), '\n')
	}
	r.lineStart(d.Name, "_sum", s, "")
	r.buf = append(r.appendValue(r.buf, h.Sum), '\n')
	r.lineStart(d.Name, "_count", s, "")
	r.buf = append(r.appendCount(r.buf, h.Count), '\n')
}

// lineStart appends the start of a sample line of a histogram: its name
// with suffix, its labels (with le when not empty) and the space before
// the value.
func (r *renderer) lineStart(name, suffix string, s *tree.Sample, le string) {
	r.buf = append(r.buf, name...)
	r.buf = append(r.buf, suffix...)
	r.buf = r.appendLabels(r.buf, s, le)
	r.buf = append(r.buf, ' ')
}

// validSample reports whether s can be served, after reporting why not.
func (r *renderer) validSample(s *tree.Sample) bool {
	d := s.Desc
	switch {
	case len(s.LabelValues) != len(d.Labels):
		r.problem(fmt.Errorf("%w: %s has %d label values for %d labels %q", errSample, d.Name, len(s.LabelValues), len(d.Labels), d.Labels))
	case s.Labels != nil:
		// Rendered once for the life of the Labels, checked with it.
		if _, ok := s.Labels.Text(d.Labels, labelText); !ok {
			r.problem(fmt.Errorf("%w: %s has a label value that is not valid UTF-8: %q", errSample, d.Name, s.LabelValues))
			return false
		}
		return true
	case !validValues(s.LabelValues):
		r.problem(fmt.Errorf("%w: %s has a label value that is not valid UTF-8: %q", errSample, d.Name, s.LabelValues))
	case d.Kind == tree.Histogram && s.Histogram == nil:
		r.problem(fmt.Errorf("%w: histogram %s%q has no value", errSample, d.Name, s.LabelValues))
	default:
		return true
	}
	return false
}

// appendCount appends a histogram count as client_golang writes it: a
// float in the text format, an integer in OpenMetrics.
func (r *renderer) appendCount(dst []byte, n uint64) []byte {
	if r.format == OpenMetrics {
		return strconv.AppendUint(dst, n, 10)
	}
	return appendFloat(dst, float64(n))
}

// appendLe appends the text of a bucket's upper bound.
func appendLe(dst []byte, b float64, format Format) []byte {
	if format == OpenMetrics {
		return appendOMFloat(dst, b)
	}
	return appendFloat(dst, b)
}

// validValues reports whether every value is valid UTF-8.
func validValues(vals []string) bool {
	for _, v := range vals {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// appendLabels appends {name="value",...} in label name order, with le last
// when it is not empty, or nothing when there is no label at all.
func (r *renderer) appendLabels(dst []byte, s *tree.Sample, le string) []byte {
	vals := s.LabelValues
	if len(vals) == 0 && le == "" {
		return dst
	}
	if s.Labels != nil && len(vals) > 0 {
		text, _ := s.Labels.Text(s.Desc.Labels, labelText)
		dst = append(dst, '{')
		dst = append(dst, text...)
		if le != "" {
			dst = append(dst, `,le="`...)
			dst = append(dst, le...)
			dst = append(dst, '"')
		}
		return append(dst, '}')
	}
	if s.Desc != r.lastDesc {
		order, ok := r.orders[s.Desc]
		if !ok {
			order = labelOrder(s.Desc.Labels)
			r.orders[s.Desc] = order
		}
		r.lastDesc, r.lastOrder = s.Desc, order
	}
	dst = append(dst, '{')
	for j, i := range r.lastOrder {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, s.Desc.Labels[i]...)
		dst = append(dst, '=', '"')
		dst = appendLabelValue(dst, vals[i])
		dst = append(dst, '"')
	}
	if le != "" {
		if len(vals) > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `le="`...)
		dst = append(dst, le...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// labelText renders label pairs for tree.Labels.Text: name="value" pairs
// in label name order, separated by commas, as appendLabels writes them
// between braces. It reports false if a value is not valid UTF-8.
func labelText(names, values []string) ([]byte, bool) {
	if len(names) != len(values) || !validValues(values) {
		return nil, false
	}
	n := 0
	for i := range names {
		n += len(names[i]) + len(values[i]) + 4
	}
	dst := make([]byte, 0, n)
	for j, i := range labelOrder(names) {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, names[i]...)
		dst = append(dst, '=', '"')
		dst = appendLabelValue(dst, values[i])
		dst = append(dst, '"')
	}
	return dst, true
}

// appendLabelValue appends v escaped as a label value: backslash, double
// quote and line feed are escaped, in both formats.
func appendLabelValue(dst []byte, v string) []byte {
	start := 0
	for i := 0; i < len(v); i++ {
		var esc string
		switch v[i] {
		case '\\':
			esc = `\\`
		case '"':
			esc = `\"`
		case '\n':
			esc = `\n`
		default:
			continue
		}
		dst = append(dst, v[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	return append(dst, v[start:]...)
}

// appendHelp appends a help text escaped: backslash and line feed, and in
// OpenMetrics also the double quote.
func appendHelp(dst []byte, help string, om bool) []byte {
	start := 0
	for i := 0; i < len(help); i++ {
		var esc string
		switch help[i] {
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '"':
			if !om {
				continue
			}
			esc = `\"`
		default:
			continue
		}
		dst = append(dst, help[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	return append(dst, help[start:]...)
}

// appendValue appends a counter or gauge value in the renderer's format.
func (r *renderer) appendValue(dst []byte, v float64) []byte {
	if r.format == OpenMetrics {
		return appendOMFloat(dst, v)
	}
	return appendFloat(dst, v)
}

// maxExactInt is the largest integer every smaller one of which a float64
// holds exactly.
const maxExactInt = 1 << 53

// appendFloat appends v as client_golang's text encoder writes it: the
// shortest 'g' form (1500000 is 1.5e+06). Integers, most values here, take
// a faster path to the same text.
func appendFloat(dst []byte, v float64) []byte {
	if v == math.Trunc(v) && v > -maxExactInt && v < maxExactInt {
		return appendIntG(dst, int64(v))
	}
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, +1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// appendIntG appends the integer i, |i| < 2^53, as strconv.AppendFloat
// with 'g' and the shortest precision writes float64(i): in full below a
// million, else as the digits without trailing zeros and an exponent of
// at least two digits. (The shortest decimal that reads back as an integer
// below 2^53 is that integer.)
func appendIntG(dst []byte, i int64) []byte {
	if i > -1e6 && i < 1e6 {
		return strconv.AppendInt(dst, i, 10)
	}
	if i < 0 {
		dst = append(dst, '-')
		i = -i
	}
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], i, 10)
	exp := len(d) - 1
	for len(d) > 1 && d[len(d)-1] == '0' {
		d = d[:len(d)-1]
	}
	dst = append(dst, d[0])
	if len(d) > 1 {
		dst = append(dst, '.')
		dst = append(dst, d[1:]...)
	}
	dst = append(dst, 'e', '+')
	if exp < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(exp), 10)
}

// appendOMFloat appends v as OpenMetrics writes floats: with a decimal
// point or an exponent, as client_golang writes them.
func appendOMFloat(dst []byte, v float64) []byte {
	if v == math.Trunc(v) && v > -maxExactInt && v < maxExactInt {
		if v > -1e6 && v < 1e6 {
			dst = strconv.AppendInt(dst, int64(v), 10)
			return append(dst, '.', '0')
		}
		return appendIntG(dst, int64(v))
	}
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, +1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
	if !bytes.ContainsAny(dst[start:], "e.") {
		dst = append(dst, '.', '0')
	}
	return dst
}
