package exposition

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// snapSource serves a fixed snapshot.
type snapSource struct{ snap *tree.Snapshot }

func (s snapSource) Snapshot(context.Context) *tree.Snapshot { return s.snap }

var (
	bytesDesc = tree.NewDesc("netfilter_test_bytes_total", "Bytes, with a \\ and a\nnewline and \"quotes\".", tree.Counter, "direction", "dport")
	sizeDesc  = tree.NewDesc("netfilter_test_size", "A gauge.", tree.Gauge)
	durDesc   = tree.NewDesc("netfilter_test_duration_seconds", "A histogram.", tree.Histogram, "proto")
)

// testSnapshot has a counter whose samples are interleaved with a gauge's,
// label values that need escaping, values of every kind and a histogram.
func testSnapshot() *tree.Snapshot {
	var b tree.Builder
	b.Add(bytesDesc, 1500, nil, "orig", "443")
	b.Add(sizeDesc, 0.25, nil)
	b.Add(bytesDesc, 3e9, nil, "reply", `a"b\c`+"\nd")
	b.AddHistogram(durDesc, tree.HistogramValue{Count: 3, Sum: 1.5, Buckets: map[float64]uint64{0.1: 1, 1: 2}}, "tcp")
	return &tree.Snapshot{Samples: b.Samples()}
}

func renderString(t *testing.T, f Format, reg []*dto.MetricFamily, snap *tree.Snapshot) string {
	t.Helper()
	var buf bytes.Buffer
	left, err := render(&buf, f, reg, snap)
	if err != nil {
		t.Fatal(err)
	}
	if left.n != 0 {
		t.Fatalf("left out %d: %v", left.n, left.err)
	}
	return buf.String()
}

func TestRenderText(t *testing.T) {
	want := `# HELP netfilter_test_bytes_total Bytes, with a \\ and a\nnewline and "quotes".
# TYPE netfilter_test_bytes_total counter
netfilter_test_bytes_total{direction="orig",dport="443"} 1500
netfilter_test_bytes_total{direction="reply",dport="a\"b\\c\nd"} 3e+09
# HELP netfilter_test_duration_seconds A histogram.
# TYPE netfilter_test_duration_seconds histogram
netfilter_test_duration_seconds_bucket{proto="tcp",le="0.1"} 1
netfilter_test_duration_seconds_bucket{proto="tcp",le="1"} 2
netfilter_test_duration_seconds_bucket{proto="tcp",le="+Inf"} 3
netfilter_test_duration_seconds_sum{proto="tcp"} 1.5
netfilter_test_duration_seconds_count{proto="tcp"} 3
# HELP netfilter_test_size A gauge.
# TYPE netfilter_test_size gauge
netfilter_test_size 0.25
`
	if got := renderString(t, Text, nil, testSnapshot()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// What client_golang's own encoder makes of the same samples parses
	// to the same families.
	if err := testutil.GatherAndCompare(NewGatherer(snapSource{testSnapshot()}), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestRenderOpenMetrics(t *testing.T) {
	want := `# HELP netfilter_test_bytes Bytes, with a \\ and a\nnewline and \"quotes\".
# TYPE netfilter_test_bytes counter
netfilter_test_bytes_total{direction="orig",dport="443"} 1500.0
netfilter_test_bytes_total{direction="reply",dport="a\"b\\c\nd"} 3e+09
# HELP netfilter_test_duration_seconds A histogram.
# TYPE netfilter_test_duration_seconds histogram
netfilter_test_duration_seconds_bucket{proto="tcp",le="0.1"} 1
netfilter_test_duration_seconds_bucket{proto="tcp",le="1.0"} 2
netfilter_test_duration_seconds_bucket{proto="tcp",le="+Inf"} 3
netfilter_test_duration_seconds_sum{proto="tcp"} 1.5
netfilter_test_duration_seconds_count{proto="tcp"} 3
# HELP netfilter_test_size A gauge.
# TYPE netfilter_test_size gauge
netfilter_test_size 0.25
# EOF
`
	if got := renderString(t, OpenMetrics, nil, testSnapshot()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRenderValues(t *testing.T) {
	for _, tt := range []struct {
		v        float64
		text, om string
	}{
		{0, "0", "0.0"},
		{1, "1", "1.0"},
		{-1, "-1", "-1.0"},
		{1 << 53, "9.007199254740992e+15", "9.007199254740992e+15"},
		{1<<53 - 1, "9.007199254740991e+15", "9.007199254740991e+15"},
		{999999, "999999", "999999.0"},
		{-999999, "-999999", "-999999.0"},
		{1e6, "1e+06", "1e+06"},
		{-1500000, "-1.5e+06", "-1.5e+06"},
		{134217728, "1.34217728e+08", "1.34217728e+08"},
		{1e15, "1e+15", "1e+15"},
		{0.001, "0.001", "0.001"},
		{1e-7, "1e-07", "1e-07"},
		{math.NaN(), "NaN", "NaN"},
		{math.Inf(1), "+Inf", "+Inf"},
		{math.Inf(-1), "-Inf", "-Inf"},
	} {
		// The text format writes what client_golang writes.
		if want := strconv.FormatFloat(tt.v, 'g', -1, 64); tt.text != want && tt.v != 0 && tt.v != 1 && tt.v != -1 && !math.IsNaN(tt.v) && !math.IsInf(tt.v, 0) {
			t.Errorf("test case %v: text %q is not strconv's %q", tt.v, tt.text, want)
		}
		if got := string(appendFloat(nil, tt.v)); got != tt.text {
			t.Errorf("text %v: %q, want %q", tt.v, got, tt.text)
		}
		if got := string(appendOMFloat(nil, tt.v)); got != tt.om {
			t.Errorf("OpenMetrics %v: %q, want %q", tt.v, got, tt.om)
		}
	}
}

// TestRenderLeavesOutWhatCannotBeServed checks that bad samples and
// families are left out and reported, and that the rest is served.
func TestRenderLeavesOutWhatCannotBeServed(t *testing.T) {
	good := tree.NewDesc("netfilter_test_good", "Good.", tree.Gauge, "l")
	clash := tree.NewDesc("netfilter_test_good", "Different help.", tree.Gauge, "l")
	badName := tree.NewDesc("netfilter-test", "Bad name.", tree.Gauge)
	badLabel := tree.NewDesc("netfilter_test_bad_label", "Bad label.", tree.Gauge, "__reserved")
	var b tree.Builder
	b.Add(good, 1, nil, "a")
	b.Add(good, 2, nil)                                            // too few label values
	b.Add(good, 3, nil, "\xff")                                    // not UTF-8
	b.Add(clash, 4, nil, "b")                                      // same name, other help
	b.Add(badName, 5, nil)                                         // invalid name
	b.Add(badLabel, 6, nil, "x")                                   // invalid label name
	b.AddHistogram(durDesc, tree.HistogramValue{}, "tcp", "extra") // label count
	var buf bytes.Buffer
	left, err := render(&buf, Text, nil, &tree.Snapshot{Samples: b.Samples()})
	if err != nil {
		t.Fatal(err)
	}
	want := "# HELP netfilter_test_good Good.\n# TYPE netfilter_test_good gauge\nnetfilter_test_good{l=\"a\"} 1\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
	if left.n != 6 {
		t.Errorf("%d left out, want 6: %v", left.n, left.err)
	}
	for _, s := range []string{"label values", "UTF-8", "described twice", "not a valid metric name", "invalid label name"} {
		if !strings.Contains(left.err.Error(), s) {
			t.Errorf("reasons %q do not say %q", left.err, s)
		}
	}
}

// TestRenderRegistryFamilies checks that the registry's families come
// first, that a family the snapshot also has is served once, from the
// snapshot, and that OpenMetrics ends with one # EOF.
func TestRenderRegistryFamilies(t *testing.T) {
	reg := prom.NewRegistry()
	reg.MustRegister(prom.NewGaugeFunc(prom.GaugeOpts{Name: "netfilter_exporter_build_info", Help: "Build."}, func() float64 { return 1 }))
	reg.MustRegister(prom.NewGaugeFunc(prom.GaugeOpts{Name: "netfilter_test_size", Help: "Clashes."}, func() float64 { return 7 }))
	c := prom.NewCounter(prom.CounterOpts{Name: "netfilter_exporter_things_total", Help: "Things."})
	c.Add(2)
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Format{Text, OpenMetrics} {
		var buf bytes.Buffer
		left, err := render(&buf, f, mfs, testSnapshot())
		if err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if left.n != 1 || !strings.Contains(left.err.Error(), "netfilter_test_size") {
			t.Errorf("%s: left out %d (%v), want the registry's netfilter_test_size", f, left.n, left.err)
		}
		if strings.Count(out, "# TYPE netfilter_test_size ") != 1 || strings.Contains(out, "netfilter_test_size 7") {
			t.Errorf("%s: netfilter_test_size not served once from the snapshot:\n%s", f, out)
		}
		if !strings.HasPrefix(out, "# HELP netfilter_exporter_build_info") {
			t.Errorf("%s: the registry's families do not come first:\n%s", f, out)
		}
		if f == OpenMetrics {
			if !strings.HasSuffix(out, "\nnetfilter_test_size 0.25\n# EOF\n") || strings.Count(out, "# EOF") != 1 {
				t.Errorf("OpenMetrics does not end with one # EOF:\n%s", out)
			}
			if !strings.Contains(out, "# TYPE netfilter_exporter_things counter\nnetfilter_exporter_things_total 2.0\n") {
				t.Errorf("OpenMetrics registry counter not in OpenMetrics form:\n%s", out)
			}
		} else if _, err := parseText(buf.Bytes()); err != nil {
			t.Errorf("text does not parse: %v\n%s", err, out)
		}
	}
}

// TestRenderSharedLabels checks that samples with shared Labels render as
// those with their own label values, in both formats and for histograms.
func TestRenderSharedLabels(t *testing.T) {
	orig := tree.NewLabels("orig", "443")
	odd := tree.NewLabels("reply", `a"b\c`+"\nd")
	tcp := tree.NewLabels("tcp")
	var b tree.Builder
	b.AddShared(bytesDesc, 1500, nil, orig)
	b.Add(sizeDesc, 0.25, nil)
	b.AddShared(bytesDesc.WithLeaf("reply"), 3e9, nil, odd)
	b.AddHistogram(durDesc, tree.HistogramValue{Count: 3, Sum: 1.5, Buckets: map[float64]uint64{0.1: 1, 1: 2}}, "tcp")
	s := b.Samples()
	s[3].Labels = tcp
	shared := &tree.Snapshot{Samples: s}
	for _, f := range []Format{Text, OpenMetrics} {
		for range 2 { // rendered, then from the cache
			if got, want := renderString(t, f, nil, shared), renderString(t, f, nil, testSnapshot()); got != want {
				t.Errorf("%s: shared labels render\n%s\nwant\n%s", f, got, want)
			}
		}
	}
	bad := tree.NewLabels("\xff", "1")
	var bb tree.Builder
	bb.AddShared(bytesDesc, 1, nil, bad)
	var buf bytes.Buffer
	if left, _ := render(&buf, Text, nil, &tree.Snapshot{Samples: bb.Samples()}); left.n != 1 || buf.Len() != 0 {
		t.Errorf("invalid shared labels: left out %d, rendered %q", left.n, buf.String())
	}
}

// TestIntegersAsClientGolang checks the integer fast path against
// strconv's shortest 'g' form, which client_golang writes, in both formats.
func TestIntegersAsClientGolang(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		v := float64(r.Int64N(1<<53) >> r.IntN(53))
		if i%2 == 1 {
			v = -v
		}
		if v == 0 || v == 1 || v == -1 {
			continue // written as client_golang's special cases, tested above
		}
		want := strconv.FormatFloat(v, 'g', -1, 64)
		if got := string(appendFloat(nil, v)); got != want {
			t.Fatalf("%v: text %q, want %q", v, got, want)
		}
		if !strings.ContainsAny(want, ".e") {
			want += ".0"
		}
		if got := string(appendOMFloat(nil, v)); got != want {
			t.Fatalf("%v: OpenMetrics %q, want %q", v, got, want)
		}
	}
}

// tableSnapshot holds, for every way a table's fixed labels can join its
// rows' labels, a table and regular samples of the same family before it;
// label values that need escaping; a row with labels that are not valid
// UTF-8 and columns that cannot be served, left out.
func tableSnapshot() (snap *tree.Snapshot, bad int) {
	dir := tree.NewDesc("netfilter_test_dir_bytes_total", "Bytes by direction.", tree.Counter, "direction", "dport", "src")
	last := tree.NewDesc("netfilter_test_last", "A fixed label sorting last.", tree.Gauge, "zz", "dport", "src")
	mixed := tree.NewDesc("netfilter_test_mixed", "Fixed labels on both sides.", tree.Gauge, "a", "z", "dport", "src")
	plain := tree.NewDesc("netfilter_test_plain_total", "No fixed label.", tree.Counter, "dport", "src")
	hist := tree.NewDesc("netfilter_test_hist", "Not in a table.", tree.Histogram, "dport", "src")
	wrong := tree.NewDesc("netfilter_test_wrong", "Labels that are not the table's.", tree.Gauge, "dport", "dst")
	none := tree.NewDesc("netfilter_test_none", "No label at all.", tree.Gauge)
	only := tree.NewDesc("netfilter_test_only", "Fixed labels only.", tree.Gauge, "direction")
	var b tree.Builder
	b.Add(dir, 7, nil, "orig", "22", "192.0.2.9")
	b.Add(sizeDesc, 0.25, nil)
	names := []string{"dport", "src"}
	rows := []tree.Row{
		{Labels: tree.NewLabels("443", "192.0.2.1"), Path: []string{"443", "192.0.2.1"}},
		{Labels: tree.NewLabels(`a"b\c`+"\nd", "::1"), Path: []string{"x", "y"}},
		{Labels: tree.NewLabels("\xff", "192.0.2.3")}, // left out
		{Labels: tree.NewLabels("53", "192.0.2.4")},
	}
	cols := []tree.Column{
		{Desc: dir.WithLeaf("orig"), Fixed: []string{"orig"}},
		{Desc: plain},
		{Desc: dir.WithLeaf("reply"), Fixed: []string{"reply"}},
		{Desc: last, Fixed: []string{"x"}},
		{Desc: mixed, Fixed: []string{"1", "2"}},
		{Desc: hist},                          // left out: a histogram
		{Desc: wrong},                         // left out: not the table's label names
		{Desc: dir, Fixed: nil},               // left out: a label value missing
		{Desc: only, Fixed: []string{"\xfe"}}, // left out: not UTF-8
	}
	t := &tree.Table{Columns: cols, Names: names, Prefix: []string{"test"}, Rows: rows}
	for i := range len(rows) * len(cols) {
		t.Values = append(t.Values, float64(i)*1.5e5)
	}
	b.AddTable(t)
	b.AddTable(&tree.Table{Columns: []tree.Column{{Desc: none}, {Desc: only, Fixed: []string{"orig"}}}, Rows: []tree.Row{{}, {}}, Values: []float64{1, 2, 3, 4}})
	// Left out: the row of the \xff value, in the 5 columns served, and
	// the 4 rows of the 4 columns that cannot be.
	return &tree.Snapshot{Samples: b.Samples(), Tables: b.Tables()}, 5 + 4*4
}

// TestRenderTables checks that the samples of tables render as the same
// samples one by one would, byte for byte, in both formats, and that what
// cannot be served is left out and counted.
func TestRenderTables(t *testing.T) {
	snap, bad := tableSnapshot()
	// The same samples, one by one, without those left out.
	flat := &tree.Snapshot{}
	for s := range snap.All() {
		c := s.Clone()
		c.Labels = nil
		switch {
		case s.Desc.Kind == tree.Histogram, s.Desc.Name == "netfilter_test_wrong",
			len(s.LabelValues) != len(s.Desc.Labels), !validValues(s.LabelValues):
			continue
		}
		flat.Samples = append(flat.Samples, c)
	}
	if len(flat.Samples) != snap.Len()-bad {
		t.Fatalf("%d samples served one by one, want %d", len(flat.Samples), snap.Len()-bad)
	}
	for _, f := range []Format{Text, OpenMetrics} {
		want := renderString(t, f, nil, flat)
		for range 2 { // rendered, then from the cache
			var buf bytes.Buffer
			left, err := render(&buf, f, nil, snap)
			if err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != want {
				t.Errorf("%s: tables render\n%s\nwant\n%s", f, got, want)
			}
			if left.n != bad {
				t.Errorf("%s: left out %d, want %d: %v", f, left.n, bad, left.err)
			}
		}
	}
	out := renderString(t, Text, nil, flat)
	for _, line := range []string{
		`netfilter_test_dir_bytes_total{direction="orig",dport="22",src="192.0.2.9"} 7`,
		`netfilter_test_dir_bytes_total{direction="reply",dport="a\"b\\c\nd",src="::1"} 1.65e+06`,
		`netfilter_test_last{dport="443",src="192.0.2.1",zz="x"} 450000`,
		`netfilter_test_mixed{a="1",dport="53",src="192.0.2.4",z="2"} 4.65e+06`,
		`netfilter_test_plain_total{dport="443",src="192.0.2.1"} 150000`,
		`netfilter_test_none 3`,
		`netfilter_test_only{direction="orig"} 4`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("no line %s in\n%s", line, out)
		}
	}
	if _, err := parseText([]byte(out)); err != nil {
		t.Errorf("text does not parse: %v", err)
	}
}

// TestRenderNoFamilyNameTwice checks the families that would share a name:
// client_golang's gauge go_memstats_alloc_bytes and counter
// go_memstats_alloc_bytes_total are both served, the counter as unknown
// (no TYPE line) under its full name in OpenMetrics; the same for a
// snapshot counter beside a snapshot gauge, and for a counter whose
// _created name is a gauge's; a gauge of a histogram's _count name is left
// out in both formats.
func TestRenderNoFamilyNameTwice(t *testing.T) {
	reg := prom.NewRegistry()
	reg.MustRegister(
		prom.NewGaugeFunc(prom.GaugeOpts{Name: "go_memstats_alloc_bytes", Help: "In use."}, func() float64 { return 5 }),
		prom.NewCounterFunc(prom.CounterOpts{Name: "go_memstats_alloc_bytes_total", Help: "Allocated."}, func() float64 { return 7 }),
		prom.NewGaugeFunc(prom.GaugeOpts{Name: "netfilter_test_duration_seconds_count", Help: "Clashes."}, func() float64 { return 1 }),
	)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	flows := tree.NewDesc("netfilter_test_flows", "Flows now.", tree.Gauge)
	flowsTotal := tree.NewDesc("netfilter_test_flows_total", "Flows ever.", tree.Counter)
	created := tree.NewDesc("netfilter_test_resets_created", "A gauge.", tree.Gauge)
	resets := tree.NewDesc("netfilter_test_resets_total", "Resets.", tree.Counter)
	var b tree.Builder
	b.Add(flows, 2, nil)
	b.Add(flowsTotal, 9, nil)
	b.Add(created, 3, nil)
	b.Add(resets, 4, nil)
	b.AddHistogram(durDesc, tree.HistogramValue{Count: 1, Sum: 0.5, Buckets: map[float64]uint64{1: 1}}, "tcp")
	snap := &tree.Snapshot{Samples: b.Samples()}

	wantOM := `# HELP go_memstats_alloc_bytes In use.
# TYPE go_memstats_alloc_bytes gauge
go_memstats_alloc_bytes 5.0
# HELP go_memstats_alloc_bytes_total Allocated.
go_memstats_alloc_bytes_total 7.0
# HELP netfilter_test_duration_seconds A histogram.
# TYPE netfilter_test_duration_seconds histogram
netfilter_test_duration_seconds_bucket{proto="tcp",le="1.0"} 1
netfilter_test_duration_seconds_bucket{proto="tcp",le="+Inf"} 1
netfilter_test_duration_seconds_sum{proto="tcp"} 0.5
netfilter_test_duration_seconds_count{proto="tcp"} 1
# HELP netfilter_test_flows Flows now.
# TYPE netfilter_test_flows gauge
netfilter_test_flows 2.0
# HELP netfilter_test_flows_total Flows ever.
netfilter_test_flows_total 9.0
# HELP netfilter_test_resets_created A gauge.
# TYPE netfilter_test_resets_created gauge
netfilter_test_resets_created 3.0
# HELP netfilter_test_resets_total Resets.
netfilter_test_resets_total 4.0
# EOF
`
	for _, f := range []Format{Text, OpenMetrics} {
		var buf bytes.Buffer
		left, err := render(&buf, f, mfs, snap)
		if err != nil {
			t.Fatal(err)
		}
		if left.n != 1 || !strings.Contains(left.err.Error(), "netfilter_test_duration_seconds and netfilter_test_duration_seconds_count (registry) both claim the name netfilter_test_duration_seconds_count") {
			t.Errorf("%s: left out %d: %v", f, left.n, left.err)
		}
		got := buf.String()
		if f == OpenMetrics && got != wantOM {
			t.Errorf("OpenMetrics: got\n%s\nwant\n%s", got, wantOM)
		}
		if f == Text && (!strings.Contains(got, "# TYPE netfilter_test_flows_total counter\n") || strings.Contains(got, "netfilter_test_duration_seconds_count Clashes") || strings.Count(got, "# HELP") != 7) {
			t.Errorf("text:\n%s", got)
		}
		if _, err := parseText(buf.Bytes()); f == Text && err != nil {
			t.Errorf("text: %v", err)
		}
	}
}
