package collector

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the tests gather")

// goldenHeader starts every golden file; the text parser ignores comments.
const goldenHeader = "# Written by `go test ./collector -update`: the collector's whole output.\n" +
	"# Samples of the families that measure time (timeFamilies) read 0.\n"

// timeFamilies measure wall or processor time as the test runs: their
// samples are compared by labels, with the value set to 0.
var timeFamilies = map[string]bool{
	"netfilter_exporter_collector_duration_seconds": true,
	"netfilter_conntrack_dump_duration_seconds":     true,
	"netfilter_conntrack_dump_cpu_seconds_total":    true,
}

// checkGolden compares everything p gathers, every family, with a golden
// file (-update rewrites it), and lints it with promlint.
func checkGolden(t *testing.T, p prom.Gatherer, golden string) {
	t.Helper()
	mfs, err := p.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !timeFamilies[mf.GetName()] {
			continue
		}
		for _, m := range mf.GetMetric() {
			zero(m)
		}
	}
	if *update {
		var b bytes.Buffer
		b.WriteString(goldenHeader)
		enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./collector -update writes it)", err)
	}
	if !strings.HasPrefix(string(want), goldenHeader) {
		t.Errorf("%s does not start with the golden header: written by hand?", golden)
	}
	gathered := prom.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
	if err := testutil.GatherAndCompare(gathered, bytes.NewReader(want)); err != nil {
		t.Errorf("%s: %v\n(go test ./collector -update rewrites it; review the diff)", golden, err)
	}
	problems, err := testutil.GatherAndLint(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		if contractTypeInName[pr.Metric] && pr.Text == "metric name should not include type 'counter'" {
			continue
		}
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
}

// zero sets the value of a sample to 0.
func zero(m *dto.Metric) {
	v := 0.0
	switch {
	case m.Counter != nil:
		m.Counter.Value = &v
	case m.Gauge != nil:
		m.Gauge.Value = &v
	case m.Untyped != nil:
		m.Untyped.Value = &v
	}
}
