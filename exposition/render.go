package exposition

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
// OpenMetrics, the closing # EOF line. No two families written claim one
// name (see resolveNames): a family that would is left out, or, for an
// OpenMetrics counter, served as unknown under its full name.
func render(w io.Writer, format Format, reg []*dto.MetricFamily, snap *tree.Snapshot) (leftOut, error) {
	r := &renderer{w: w, format: format, buf: make([]byte, 0, chunkSize+4096), orders: make(map[*tree.Desc][]int)}
	fams := groupFamilies(snap, r)
	fams, reg = r.resolveNames(snap, fams, reg)
	if len(reg) > 0 {
		encFormat := expfmt.NewFormat(expfmt.TypeTextPlain)
		if format == OpenMetrics {
			encFormat = expfmt.NewFormat(expfmt.TypeOpenMetrics)
		}
		enc := expfmt.NewEncoder(bufWriter{r}, encFormat)
		for _, mf := range reg {
			start := len(r.buf)
			if err := enc.Encode(mf); err != nil {
				r.problem(fmt.Errorf("%w: encoding %s: %w", errFamily, mf.GetName(), err))
			}
			if format == OpenMetrics {
				r.buf = dropUnknownType(r.buf, start, mf.GetName())
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

// dropUnknownType removes the line "# TYPE name unknown" from what the
// OpenMetrics encoder wrote of one family, buf[start:]. A family of type
// unknown is written without a TYPE line: the spec says "If no TYPE is
// exposed, the MetricFamily MUST be of type Unknown" (OpenMetrics 1.0.0,
// "MetricFamily metadata"), and a TYPE line saying unknown is one that
// Prometheus's text format parser, which promtool check metrics uses,
// refuses (unknown metric type "unknown"). Without it both read the family
// alike, as the python parser does.
func dropUnknownType(buf []byte, start int, name string) []byte {
	line := "# TYPE " + name + " unknown\n"
	i := -1
	if bytes.HasPrefix(buf[start:], []byte(line)) {
		i = start
	} else if j := bytes.Index(buf[start:], []byte("\n"+line)); j >= 0 {
		// After the HELP line: a help text has no line feed.
		i = start + j + 1
	}
	if i < 0 {
		return buf
	}
	return append(buf[:i], buf[i+len(line):]...)
}

// claimNames appends to dst the sample names that a family of name and
// type reserves in format, its own name among them. In OpenMetrics they
// are the suffixes of its type (OpenMetrics 1.0.0, "Suffixes"): _total and
// _created for a counter (whose name is then the one without _total),
// _bucket, _count, _sum and _created for a histogram, _count, _sum and
// _created for a summary. The text format's parser takes _bucket, _count
// and _sum lines for those of the histogram or summary of the shorter name,
// so there a histogram or summary reserves them too.
func claimNames(dst []string, name string, typ dto.MetricType, format Format) []string {
	dst = append(dst, name)
	var suffixes []string
	switch {
	case typ == dto.MetricType_COUNTER && format == OpenMetrics:
		suffixes = []string{"_total", "_created"}
	case typ == dto.MetricType_HISTOGRAM && format == OpenMetrics:
		suffixes = []string{"_bucket", "_count", "_sum", "_created"}
	case typ == dto.MetricType_SUMMARY && format == OpenMetrics:
		suffixes = []string{"_count", "_sum", "_created"}
	case typ == dto.MetricType_HISTOGRAM:
		suffixes = []string{"_bucket", "_count", "_sum"}
	case typ == dto.MetricType_SUMMARY:
		suffixes = []string{"_count", "_sum"}
	}
	for _, s := range suffixes {
		dst = append(dst, name+s)
	}
	return dst
}

// nameClaims records which family claims each sample name.
type nameClaims map[string]string

// take claims names for family, unless one of them is claimed already; it
// returns the name and the family that holds it then.
func (c nameClaims) take(family string, names []string) (string, string, bool) {
	for _, n := range names {
		if holder, ok := c[n]; ok {
			return n, holder, false
		}
	}
	for _, n := range names {
		c[n] = family
	}
	return "", "", true
}

// resolveNames makes the family names of one body unique, as OpenMetrics
// requires (a metric family name appears once) and as the text format's
// parser needs, and returns the families of the snapshot and of the
// registry to write. Every family claims the sample names of its type (see
// claimNames). First the snapshot's families claim theirs, then the
// registry's, except OpenMetrics counters that end in _total; a family that
// finds one of its names claimed already is left out (a registry family
// that has the name of a snapshot one, or a gauge foo_count beside a
// histogram foo). Then the OpenMetrics counters, the snapshot's first:
// each is family foo of samples foo_total when foo, foo_total and
// foo_created are all free, else a family of type unknown under its full
// name foo_total (the spec's own way to serve a counter that does not fit,
// as client_golang does for a counter without _total), so that the gauge
// go_memstats_alloc_bytes and the counter go_memstats_alloc_bytes_total
// are both served, the counter as unknown. A counter with a negative or
// NaN sample, which an OpenMetrics counter cannot have, is unknown too.
func (r *renderer) resolveNames(snap *tree.Snapshot, fams []*family, reg []*dto.MetricFamily) ([]*family, []*dto.MetricFamily) {
	claims := make(nameClaims, 4*(len(fams)+len(reg)))
	var names []string
	keep := make([]bool, len(fams))
	// regOut[i] is what is written of reg[i]: nil when it is left out,
	// a copy when its type changes. reg is not changed: the handler
	// renders it in both formats.
	regOut := make([]*dto.MetricFamily, len(reg))
	var counters []*family
	var regCounters []int
	for i, f := range fams {
		d := f.desc
		typ := kindType(d.Kind)
		if r.format == OpenMetrics && d.Kind == tree.Counter {
			if f.omName != d.Name && validCounter(snap, f) {
				counters = append(counters, f)
				keep[i] = true
				continue
			}
			f.omName = d.Name
			typ = dto.MetricType_UNTYPED
		}
		names = claimNames(names[:0], d.Name, typ, r.format)
		if n, holder, ok := claims.take(d.Name, names); !ok {
			r.problem(fmt.Errorf("%w: %s and %s both claim the name %s; %s is left out", errFamily, holder, d.Name, n, d.Name))
			continue
		}
		keep[i] = true
	}
	for i, mf := range reg {
		name, typ := mf.GetName(), mf.GetType()
		if r.format == OpenMetrics && typ == dto.MetricType_COUNTER {
			if strings.HasSuffix(name, "_total") && name != "_total" && validRegCounter(mf) {
				regCounters = append(regCounters, i)
				continue
			}
			typ = dto.MetricType_UNTYPED
		}
		names = claimNames(names[:0], name, typ, r.format)
		n, holder, ok := claims.take(name, names)
		switch {
		case ok && typ != mf.GetType():
			regOut[i] = untypedCopy(mf)
		case ok:
			regOut[i] = mf
		case holder == name:
			r.problem(fmt.Errorf("%w: %s is served by a collector and by the registry; the registry's is left out", errFamily, name))
		default:
			r.problem(fmt.Errorf("%w: %s and %s (registry) both claim the name %s; %s is left out", errFamily, holder, name, n, name))
		}
	}
	// The counters of OpenMetrics.
	for _, f := range counters {
		d := f.desc
		names = claimNames(names[:0], f.omName, dto.MetricType_COUNTER, r.format)
		if _, _, ok := claims.take(d.Name, names); ok {
			continue
		}
		f.omName = d.Name
		if n, holder, ok := claims.take(d.Name, []string{d.Name}); !ok {
			r.problem(fmt.Errorf("%w: %s and %s both claim the name %s; %s is left out", errFamily, holder, d.Name, n, d.Name))
			keep[slices.Index(fams, f)] = false
		}
	}
	for _, i := range regCounters {
		mf := reg[i]
		name := mf.GetName()
		names = claimNames(names[:0], strings.TrimSuffix(name, "_total"), dto.MetricType_COUNTER, r.format)
		if _, _, ok := claims.take(name, names); ok {
			regOut[i] = mf
			continue
		}
		n, holder, ok := claims.take(name, []string{name})
		switch {
		case ok:
			regOut[i] = untypedCopy(mf)
		case holder == name:
			r.problem(fmt.Errorf("%w: %s is served by a collector and by the registry; the registry's is left out", errFamily, name))
		default:
			r.problem(fmt.Errorf("%w: %s and %s (registry) both claim the name %s; %s is left out", errFamily, holder, name, n, name))
		}
	}
	out := fams[:0]
	for i, f := range fams {
		if keep[i] {
			out = append(out, f)
		}
	}
	return out, slices.DeleteFunc(regOut, func(mf *dto.MetricFamily) bool { return mf == nil })
}

// kindType returns the protocol buffer type of a kind.
func kindType(k tree.Kind) dto.MetricType {
	switch k {
	case tree.Counter:
		return dto.MetricType_COUNTER
	case tree.Histogram:
		return dto.MetricType_HISTOGRAM
	}
	return dto.MetricType_GAUGE
}

// validCounter reports whether every sample of the counter f can be an
// OpenMetrics counter's: neither negative nor NaN.
func validCounter(snap *tree.Snapshot, f *family) bool {
	for _, i := range f.samples {
		if v := snap.Samples[i].Value; v < 0 || math.IsNaN(v) {
			return false
		}
	}
	for _, tc := range f.tables {
		t := tc.tab.t
		nc := len(t.Columns)
		for row := range t.Rows {
			for _, col := range tc.cols {
				if v := t.Values[row*nc+col.i]; v < 0 || math.IsNaN(v) {
					return false
				}
			}
		}
	}
	return true
}

// validRegCounter is validCounter for a registry's counter.
func validRegCounter(mf *dto.MetricFamily) bool {
	for _, m := range mf.Metric {
		if v := m.GetCounter().GetValue(); v < 0 || math.IsNaN(v) {
			return false
		}
	}
	return true
}

// untypedCopy returns mf as a family of type unknown (untyped), the
// counters' values kept, their exemplars and created timestamps dropped.
func untypedCopy(mf *dto.MetricFamily) *dto.MetricFamily {
	out := &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: dto.MetricType_UNTYPED.Enum(), Unit: mf.Unit}
	for _, m := range mf.Metric {
		v := m.GetCounter().GetValue()
		out.Metric = append(out.Metric, &dto.Metric{
			Label:       m.Label,
			Untyped:     &dto.Untyped{Value: &v},
			TimestampMs: m.TimestampMs,
		})
	}
	return out
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
	if d.Kind == tree.Counter && len(d.Name) > len("_total") {
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
	help := d.Help
	if !utf8.ValidString(help) {
		// Both formats are UTF-8 throughout.
		help = strings.ToValidUTF8(help, "\uFFFD")
	}
	r.buf = appendHelp(r.buf, help, r.format == OpenMetrics)
	r.buf = append(r.buf, '\n')
	var typ string
	switch d.Kind {
	case tree.Counter:
		// An OpenMetrics counter that does not end in _total, or that
		// is served under its full name (see resolveNames), is of type
		// unknown, which is written as no TYPE line (see
		// dropUnknownType).
		if r.format == Text || name != d.Name {
			typ = " counter\n"
		}
	case tree.Gauge:
		typ = " gauge\n"
	case tree.Histogram:
		typ = " histogram\n"
	}
	if typ != "" {
		r.buf = append(r.buf, "# TYPE "...)
		r.buf = append(r.buf, name...)
		r.buf = append(r.buf, typ...)
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
	if r.format == OpenMetrics && (h.Sum < 0 || math.IsNaN(h.Sum) || (len(bounds) > 0 && bounds[0] < 0)) {
		// An OpenMetrics histogram's sum is a counter: neither negative
		// nor NaN, and left out when a bucket is negative (OpenMetrics
		// 1.0.0, "Histogram"); its count goes with it, and the +Inf
		// bucket holds it.
		return
	}
	r.lineStart(d.Name, "_sum", s, "")
	r.buf = append(r.appendValue(r.buf, h.Sum), '\n')
	r.lineStart(d.Name, "_count", s, "")
	r.buf = append(r.appendCount(r.buf, h.Count), '\n')
}

// checkHistogram reports what makes h a histogram no parser takes: a NaN
// bound, buckets that are not cumulative, or a +Inf bucket that is not the
// count.
func checkHistogram(h *tree.HistogramValue) error {
	bounds := make([]float64, 0, len(h.Buckets))
	for b := range h.Buckets {
		if math.IsNaN(b) {
			return errors.New("a bucket bound is NaN")
		}
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	var last uint64
	for _, b := range bounds {
		n := h.Buckets[b]
		if n < last {
			return fmt.Errorf("bucket %g holds %d, less than the one before (%d): buckets are cumulative", b, n, last)
		}
		last = n
	}
	if n, ok := h.Buckets[math.Inf(1)]; ok && n != h.Count {
		return fmt.Errorf("bucket +Inf holds %d, the count is %d", n, h.Count)
	}
	if last > h.Count {
		return fmt.Errorf("bucket holds %d, more than the count %d", last, h.Count)
	}
	return nil
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
	case d.Kind == tree.Histogram && s.Histogram == nil:
		r.problem(fmt.Errorf("%w: histogram %s%q has no value", errSample, d.Name, s.LabelValues))
	case d.Kind == tree.Histogram && checkHistogram(s.Histogram) != nil:
		r.problem(fmt.Errorf("%w: histogram %s%q: %w", errSample, d.Name, s.LabelValues, checkHistogram(s.Histogram)))
	case s.Labels != nil:
		// Rendered once for the life of the Labels, checked with it.
		if _, ok := s.Labels.Text(d.Labels, labelText); !ok {
			r.problem(fmt.Errorf("%w: %s has a label value that is not valid UTF-8: %q", errSample, d.Name, s.LabelValues))
			return false
		}
		return true
	case !validValues(s.LabelValues):
		r.problem(fmt.Errorf("%w: %s has a label value that is not valid UTF-8: %q", errSample, d.Name, s.LabelValues))
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
