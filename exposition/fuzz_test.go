package exposition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// Pools the fuzz input picks from, so that names collide and values are
// the interesting ones often; a selector byte past the pool takes raw
// bytes instead.
var (
	fuzzNames = []string{
		"a", "a_total", "a_count", "a_sum", "a_bucket", "a_created", "a_info",
		"b_seconds", "b_seconds_total", "b_seconds_bucket", "b_seconds_created",
		"c:d_total", "_total", "x", "x_total_total", "9x", "x-y", "",
	}
	fuzzLabels = []string{"l", "m", "n", "le", "quantile", "__r", "a-b", ""}
	fuzzValues = []float64{
		0, 1, -1, 0.5, 1e6, 1.5e-7, 1 << 53, math.Copysign(0, -1), math.NaN(),
		math.Inf(1), math.Inf(-1), 123456789.125, -2.5e300, 5e-324,
	}
	fuzzBounds = []float64{-1, 0, 0.1, 1, 2.5, 10, math.Inf(1), math.NaN()}
)

// fuzzReader reads a fuzz input; past its end it reads zeros.
type fuzzReader struct{ p []byte }

// byte reads one byte.
func (r *fuzzReader) byte() byte {
	if len(r.p) == 0 {
		return 0
	}
	b := r.p[0]
	r.p = r.p[1:]
	return b
}

// str reads a length (at most 40) and that many bytes.
func (r *fuzzReader) str() string {
	n := min(int(r.byte())%41, len(r.p))
	s := string(r.p[:n])
	r.p = r.p[n:]
	return s
}

// pick reads a selector: an entry of pool, or raw bytes.
func (r *fuzzReader) pick(pool []string) string {
	if b := int(r.byte()); b < 8*len(pool) {
		return pool[b%len(pool)]
	}
	return r.str()
}

// float reads a value: one of fuzzValues, or, after a selector of 0xf0 or
// more, eight bytes of raw bits.
func (r *fuzzReader) float() float64 {
	if b := r.byte(); b < 0xf0 {
		return fuzzValues[int(b)%len(fuzzValues)]
	}
	var x [8]byte
	for i := range x {
		x[i] = r.byte()
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(x[:]))
}

// fuzzFamily is one family the fuzz input describes.
type fuzzFamily struct {
	name, help string
	kind       tree.Kind
	labels     []string
	registry   bool
	samples    []fuzzSample
}

// fuzzSample is one sample of a fuzzFamily: a histogram when h is set.
type fuzzSample struct {
	values []string
	v      float64
	h      *tree.HistogramValue
}

// readFamilies decodes the fuzz input: up to 6 families of up to 4 samples.
// Registry families are counters and gauges with valid, distinct names and
// label names, UTF-8 help and values, as client_golang's registry makes
// them; the snapshot's are anything, names distinct.
func readFamilies(p []byte) []fuzzFamily {
	r := &fuzzReader{p: p}
	var fams []fuzzFamily
	names := map[string]bool{}
	regNames := map[string]bool{}
	for range int(r.byte()) % 7 {
		f := fuzzFamily{name: r.pick(fuzzNames), kind: tree.Kind(r.byte() % 3)}
		flags := r.byte()
		f.registry = flags&1 == 1
		f.help = r.str()
		for range int(r.byte()) % 3 {
			f.labels = append(f.labels, r.pick(fuzzLabels))
		}
		seen := map[string]bool{}
		for range int(r.byte()) % 5 {
			s := fuzzSample{}
			for range f.labels {
				s.values = append(s.values, r.str())
			}
			if f.kind == tree.Histogram {
				h := &tree.HistogramValue{Buckets: map[float64]uint64{}}
				var n uint64
				for range int(r.byte()) % 4 {
					b := fuzzBounds[int(r.byte())%len(fuzzBounds)]
					n += uint64(r.byte() % 4)
					h.Buckets[b] = n
				}
				h.Count = n + uint64(r.byte()%3)
				h.Sum = r.float()
				s.h = h
			} else {
				s.v = r.float()
			}
			key := strings.Join(s.values, "\xff")
			if seen[key] {
				continue
			}
			seen[key] = true
			f.samples = append(f.samples, s)
		}
		if f.registry {
			if f.kind == tree.Histogram || !model.LegacyValidation.IsValidMetricName(f.name) || regNames[f.name] {
				continue
			}
			for i := range f.labels {
				f.labels[i] = fuzzLabels[i] // l, m: valid and distinct
			}
			f.help = strings.ToValidUTF8(f.help, "\uFFFD")
			for i := range f.samples {
				for j := range f.samples[i].values {
					f.samples[i].values[j] = strings.ToValidUTF8(f.samples[i].values[j], "\uFFFD")
				}
			}
			f.samples = slices.CompactFunc(f.samples, func(a, b fuzzSample) bool { return slices.Equal(a.values, b.values) })
			regNames[f.name] = true
		} else {
			if names[f.name] {
				continue
			}
			names[f.name] = true
		}
		fams = append(fams, f)
	}
	return fams
}

// build returns the families as a registry would gather them and as a
// snapshot.
func build(fams []fuzzFamily) ([]*dto.MetricFamily, *tree.Snapshot) {
	var reg []*dto.MetricFamily
	var b tree.Builder
	for _, f := range fams {
		if f.registry {
			mf := &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: kindType(f.kind).Enum()}
			for _, s := range f.samples {
				m := &dto.Metric{}
				for i, l := range f.labels {
					m.Label = append(m.Label, &dto.LabelPair{Name: &l, Value: &s.values[i]})
				}
				v := s.v
				if f.kind == tree.Counter {
					m.Counter = &dto.Counter{Value: &v}
				} else {
					m.Gauge = &dto.Gauge{Value: &v}
				}
				mf.Metric = append(mf.Metric, m)
			}
			if len(mf.Metric) > 0 {
				reg = append(reg, mf)
			}
			continue
		}
		d := tree.NewDesc(f.name, f.help, f.kind, f.labels...)
		for _, s := range f.samples {
			if s.h != nil {
				b.AddHistogram(d, *s.h, s.values...)
			} else {
				b.Add(d, s.v, nil, s.values...)
			}
		}
	}
	// A registry gathers its families sorted by name.
	sort.Slice(reg, func(i, j int) bool { return reg[i].GetName() < reg[j].GetName() })
	return reg, &tree.Snapshot{Samples: b.Samples()}
}

// validFamily reports whether the renderer can serve a snapshot family:
// the checks of newFamily.
func validFamily(f fuzzFamily) bool {
	if f.registry {
		return true
	}
	if !model.LegacyValidation.IsValidMetricName(f.name) {
		return false
	}
	for i, l := range f.labels {
		if !model.LegacyValidation.IsValidLabelName(l) || strings.HasPrefix(l, "__") || (f.kind == tree.Histogram && l == "le") || slices.Contains(f.labels[:i], l) {
			return false
		}
	}
	return true
}

// validSamples returns the samples of f the renderer serves.
func validSamples(f fuzzFamily) []fuzzSample {
	var out []fuzzSample
	for _, s := range f.samples {
		if !validValues(s.values) || (s.h != nil && checkHistogram(s.h) != nil) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// checkRoundTrip renders fams in format, parses the body back and checks
// that every family read is one given, with its help, type, samples and
// values, and that every family given that is not read was reported left
// out.
func checkRoundTrip(t *testing.T, fams []fuzzFamily, format Format) {
	t.Helper()
	reg, snap := build(fams)
	var buf bytes.Buffer
	left, err := render(&buf, format, reg, snap)
	if err != nil {
		t.Fatal(err)
	}
	body := buf.Bytes()
	if !utf8.Valid(body) {
		t.Fatalf("%s body is not UTF-8:\n%s", format, body)
	}
	text := body
	if format == OpenMetrics {
		if text, err = openMetricsToText(body); err != nil {
			t.Fatalf("OpenMetrics: %v\n%s", err, body)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	got, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("%s: %v\n%s", format, err, text)
	}
	// A name may be the snapshot's and the registry's: the family read
	// must be one of them.
	byName := map[string][]fuzzFamily{}
	for _, f := range fams {
		byName[f.name] = append(byName[f.name], f)
	}
	for name, mf := range got {
		var errs []error
		for _, f := range byName[name] {
			errs = append(errs, checkFamily(format, f, mf))
		}
		if len(errs) == 0 || !slices.Contains(errs, nil) {
			t.Fatalf("%s: family %s is none given: %v\n%s", format, name, errs, body)
		}
	}
	// Past ten problems the renderer counts the rest without saying them.
	truncated := left.n >= 10
	for _, f := range fams {
		// A family without samples is not seen at all; one that can be
		// served without valid samples is not served.
		if _, ok := got[f.name]; ok || truncated || len(f.samples) == 0 || (validFamily(f) && len(validSamples(f)) == 0) {
			continue
		}
		if left.err == nil || (!strings.Contains(left.err.Error(), f.name) && !strings.Contains(left.err.Error(), strconv.Quote(f.name))) {
			t.Fatalf("%s: family %q (%s) is neither served nor reported left out (%v)\n%s", format, f.name, f.kind, left.err, body)
		}
	}
}

// checkFamily compares a family read back with one given.
func checkFamily(format Format, f fuzzFamily, mf *dto.MetricFamily) error {
	fail := func(msg string, args ...any) error {
		return fmt.Errorf("family %q (registry %v): %s", f.name, f.registry, fmt.Sprintf(msg, args...))
	}
	if !validFamily(f) {
		return fail("served, but not valid")
	}
	// Help is UTF-8; the text format's parser skips the blanks that
	// start it (so does promtool, not the python parser).
	help := strings.TrimLeft(strings.ToValidUTF8(f.help, "\uFFFD"), " \t")
	if mf.GetHelp() != help {
		return fail("help %q, want %q", mf.GetHelp(), help)
	}
	want := kindType(f.kind)
	if typ := mf.GetType(); typ != want && (format != OpenMetrics || f.kind != tree.Counter || typ != dto.MetricType_UNTYPED) {
		return fail("type %s, want %s", typ, want)
	}
	samples := validSamples(f)
	if len(mf.Metric) != len(samples) {
		return fail("%d samples, want %d", len(mf.Metric), len(samples))
	}
	bySet := map[string]*dto.Metric{}
	for _, m := range mf.Metric {
		var kv []string
		for _, l := range m.Label {
			kv = append(kv, l.GetName()+"="+l.GetValue())
		}
		bySet[strings.Join(kv, "\xff")] = m
	}
	for _, s := range samples {
		kv := make([]string, len(f.labels))
		for i, l := range f.labels {
			kv[i] = l + "=" + s.values[i]
		}
		slices.Sort(kv)
		m := bySet[strings.Join(kv, "\xff")]
		if m == nil {
			return fail("no sample %q", kv)
		}
		if s.h == nil {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Untyped != nil:
				v = m.Untyped.GetValue()
			}
			if v != s.v && !(math.IsNaN(v) && math.IsNaN(s.v)) {
				return fail("%q: %v, want %v", kv, v, s.v)
			}
			continue
		}
		h := m.GetHistogram()
		wantB := map[float64]uint64{math.Inf(1): s.h.Count}
		for b, n := range s.h.Buckets {
			wantB[b] = n
		}
		gotB := map[float64]uint64{}
		for _, bk := range h.GetBucket() {
			gotB[bk.GetUpperBound()] = bk.GetCumulativeCount()
		}
		if fmt.Sprint(gotB) != fmt.Sprint(wantB) {
			return fail("%q: buckets %v, want %v", kv, gotB, wantB)
		}
		noSum := format == OpenMetrics && (s.h.Sum < 0 || math.IsNaN(s.h.Sum) || hasNegativeBound(s.h))
		if noSum {
			if h.SampleSum != nil || h.SampleCount != nil {
				return fail("%q: sum and count in OpenMetrics, with a sum %v", kv, s.h.Sum)
			}
			continue
		}
		if h.GetSampleCount() != s.h.Count || (h.GetSampleSum() != s.h.Sum && !(math.IsNaN(s.h.Sum) && math.IsNaN(h.GetSampleSum()))) {
			return fail("%q: count %d sum %v, want %d %v", kv, h.GetSampleCount(), h.GetSampleSum(), s.h.Count, s.h.Sum)
		}
	}
	return nil
}

// hasNegativeBound reports whether a bucket of h has a negative bound.
func hasNegativeBound(h *tree.HistogramValue) bool {
	for b := range h.Buckets {
		if b < 0 {
			return true
		}
	}
	return false
}

// seed writes a fuzz input: an int is one byte, a string its length and
// bytes, a float64 0xf0 and its bits.
func seed(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			out = append(out, byte(p))
		case string:
			out = append(out, byte(len(p)))
			out = append(out, p...)
		case float64:
			out = append(out, 0xf0)
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(p))
		}
	}
	return out
}

// Kinds and pool indexes of the seeds.
const (
	sCounter, sGauge, sHistogram = 0, 1, 2
	sSnap, sReg                  = 0, 1
	nA, nATotal, nACount         = 0, 1, 2
	nACreated                    = 5
	nB, nBTotal, nBBucket        = 7, 8, 9
	nUnderTotal                  = 12
	nBad                         = 15
	lL, lM, lLe                  = 0, 1, 3
	vOne, vMinusOne, vNaN, vInf  = 1, 2, 8, 9
	vBig                         = 6
)

// fuzzSeeds are the cases of the fix: go_memstats_alloc_bytes beside
// go_memstats_alloc_bytes_total, in the registry, in the snapshot and
// across both; a histogram beside a gauge of one of its names; _created;
// help and label values that need escaping or are not UTF-8; NaN, Inf and
// negative values; invalid names.
var fuzzSeeds = [][]byte{
	// Registry: gauge a, counter a_total.
	seed(2, nA, sGauge, sReg, "Gauge.", 0, 1, vOne, nATotal, sCounter, sReg, "Counter.", 0, 1, vBig),
	// Snapshot: the same.
	seed(2, nA, sGauge, sSnap, "Gauge.", 0, 1, vOne, nATotal, sCounter, sSnap, "Counter.", 0, 1, vBig),
	// Registry gauge a, snapshot counter a_total; registry counter b_seconds_total, snapshot gauge b_seconds.
	seed(4, nA, sGauge, sReg, "G.", 0, 1, vOne, nATotal, sCounter, sSnap, "C.", 1, lL, 2, "x", vOne, "y", vInf,
		nBTotal, sCounter, sReg, "C.", 0, 1, vOne, nB, sGauge, sSnap, "G.", 0, 1, vMinusOne),
	// Histogram b_seconds, gauges b_seconds_bucket (registry) and b_seconds_created (snapshot).
	seed(3, nB, sHistogram, sSnap, "H.", 1, lL, 1, "tcp", 2, 3, 1, 6, 2, 0, 1.5,
		nBBucket, sGauge, sReg, "G.", 0, 1, vOne, 10, sGauge, sSnap, "G.", 0, 1, vOne),
	// Counter a_total and gauge a_created; counter a_count (registry) beside histogram a.
	seed(4, nATotal, sCounter, sSnap, "C.", 0, 1, vOne, nACreated, sGauge, sSnap, "G.", 0, 1, vOne,
		nA, sHistogram, sSnap, "H.", 0, 1, 1, 3, 1, 0, vOne, nACount, sCounter, sReg, "C.", 0, 1, vOne),
	// Escapes and bytes that are not UTF-8 in help and label values.
	seed(1, nATotal, sCounter, sSnap, "a \\ b\n\"c\" \xff\xfe", 2, lL, lM, 3,
		"\\\"\n", "\xff", vOne, "ok", "é", vInf, "", "\x00\r\t", vNaN),
	// NaN and negative counters; a histogram with a negative sum and bucket.
	seed(3, nATotal, sCounter, sSnap, "C.", 0, 1, vNaN, nBTotal, sCounter, sReg, "C.", 0, 1, vMinusOne,
		nB, sHistogram, sSnap, "H.", 0, 2, 2, 0, 1, 2, 2, 0, -3.0, 1, 1, 4, 0, vOne),
	// Invalid names, the name _total, le on a histogram, a NaN bound.
	seed(4, nBad, sGauge, sSnap, "G.", 0, 1, vOne, nUnderTotal, sCounter, sSnap, "C.", 0, 1, vOne,
		nB, sHistogram, sSnap, "H.", 1, lLe, 1, "1", 1, 3, 1, 0, vOne, nA, sHistogram, sSnap, "H.", 0, 1, 1, 7, 1, 0, vOne),
	// Counters without _total, raw float bits.
	seed(2, 13, sCounter, sSnap, "C.", 0, 1, 1e-310, 14, sCounter, sReg, "C.", 0, 1, math.MaxFloat64),
}

// FuzzRender renders arbitrary families, of the snapshot and of a registry,
// in both formats, and reads them back: the text format with expfmt's
// TextParser, OpenMetrics through openMetricsToText (which checks what the
// strict python parser checks) and the same parser. Every family read
// must be one given, with its help, type, samples and values, and every
// one given and not read must have been reported left out. The seeds run
// as normal tests.
func FuzzRender(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		fams := readFamilies(p)
		checkRoundTrip(t, fams, Text)
		checkRoundTrip(t, fams, OpenMetrics)
	})
}
