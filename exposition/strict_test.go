package exposition

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// pythonPath is Debian's python3, the one python3-prometheus-client is
// installed for.
const pythonPath = "/usr/bin/python3"

// pythonParse is a python program that parses its standard input, which
// must be UTF-8, with prometheus_client's strict OpenMetrics parser (argv[1]
// "openmetrics") or its text format parser ("text"), and prints the names
// of the families it read, one a line.
const pythonParse = `
import sys
from prometheus_client.openmetrics import parser as om
from prometheus_client import parser as text
body = sys.stdin.buffer.read().decode('utf-8')
p = om if sys.argv[1] == 'openmetrics' else text
for f in p.text_string_to_metric_families(body):
    print(f.name)
`

// requirePythonParser skips t (see netnstest.Unavailable) unless Debian's
// python3 imports prometheus_client's OpenMetrics parser.
func requirePythonParser(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(pythonPath, "-c", "import prometheus_client.openmetrics.parser").CombinedOutput(); err != nil {
		netnstest.Unavailable(t, "this test needs %s with prometheus_client (Debian python3-prometheus-client; make deps installs it): %v: %s", pythonPath, err, out)
	}
}

// pythonCheck parses body with prometheus_client's parser for format and
// returns the names of the families it read.
func pythonCheck(t *testing.T, format Format, body []byte) []string {
	t.Helper()
	cmd := exec.Command(pythonPath, "-c", pythonParse, format.String())
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("python prometheus_client %s parser refuses the body: %v\n%s", format, err, lastLines(stderr.String(), 3))
		return nil
	}
	return strings.Fields(string(out))
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// promtoolCheck runs `promtool check metrics` on body. It parses with the
// text format's parser and lints what it read. Allowed are promlint's
// remark about "counter" in the names of the two nf_tables counter
// families (kept as a contract, see the README), and, for OpenMetrics,
// "no help text" for the samples name_total of a counter family name:
// the text format's parser reads them as a family of their own, apart from
// the HELP line of name. Anything else, a parse error first, fails t.
func promtoolCheck(t *testing.T, format Format, body []byte) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case line == "netfilter_nftables_counter_packets_total metric name should not include type 'counter'",
			line == "netfilter_nftables_counter_bytes_total metric name should not include type 'counter'":
		case format == OpenMetrics && strings.HasSuffix(line, "_total no help text") &&
			bytes.Contains(body, []byte("\n# TYPE "+strings.TrimSuffix(line, "_total no help text")+" counter\n")):
		default:
			problems = append(problems, line)
		}
	}
	// Exit status 3 means lint problems only.
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 3 || len(problems) > 0 {
		t.Errorf("promtool check metrics (%s): %v\n%s", format, err, strings.Join(problems, "\n"))
	}
}

// prometheusOMCheck reads body with Prometheus's own OpenMetrics parser,
// the one a scrape of OpenMetrics uses, through promtool tsdb
// create-blocks-from openmetrics. That needs a timestamp on every sample:
// one is added to each sample line. Prometheus's parser is laxer than
// python's (it takes a family name twice), but it is the one that matters
// most: it must read the families of no TYPE line and every sample.
func prometheusOMCheck(t *testing.T, body []byte) {
	t.Helper()
	var in bytes.Buffer
	samples := 0
	for _, line := range strings.SplitAfter(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			in.WriteString(line)
			continue
		}
		in.WriteString(strings.TrimSuffix(line, "\n") + " 1700000000\n")
		samples++
	}
	file := filepath.Join(t.TempDir(), "body.om")
	if err := os.WriteFile(file, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("promtool", "tsdb", "create-blocks-from", "openmetrics", file, filepath.Join(t.TempDir(), "blocks")).CombinedOutput()
	if err != nil {
		t.Errorf("Prometheus's OpenMetrics parser (promtool tsdb create-blocks-from openmetrics): %v\n%s", err, lastLines(string(out), 5))
		return
	}
	// The block's line: ULID, min and max time, duration, samples.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if f := strings.Fields(lines[len(lines)-1]); len(f) < 5 || f[4] != strconv.Itoa(samples) {
		t.Errorf("Prometheus read %q samples of %d:\n%s", f, samples, out)
	}
}

// goldenSnapshot returns the families of every collector's golden file
// (../collector/testdata) as one snapshot; a family in several files, such
// as netfilter_exporter_collector_success, gets the samples of all, each
// series once. It returns the family names too.
func goldenSnapshot(t *testing.T) (*tree.Snapshot, []string) {
	t.Helper()
	files, err := filepath.Glob("../collector/testdata/*.prom")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	descs := make(map[string]*tree.Desc)
	firsts := make(map[string]*tree.Desc)
	seen := make(map[string]bool)
	var b tree.Builder
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, name := range slices.Sorted(maps.Keys(mfs)) {
			mf := mfs[name]
			var kind tree.Kind
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				kind = tree.Counter
			case dto.MetricType_GAUGE:
				kind = tree.Gauge
			case dto.MetricType_HISTOGRAM:
				kind = tree.Histogram
			default:
				t.Fatalf("%s: %s is a %s", file, name, mf.GetType())
			}
			for _, m := range mf.Metric {
				var labels, values []string
				for _, l := range m.Label {
					labels = append(labels, l.GetName())
					values = append(values, l.GetValue())
				}
				// The files gather conntrack flows by other keys: one
				// description per name and label names.
				dk := name + "{" + strings.Join(labels, ",")
				d := descs[dk]
				if d == nil {
					d = tree.NewDesc(name, mf.GetHelp(), kind, labels...)
					descs[dk] = d
				}
				if first := firsts[name]; first == nil {
					firsts[name] = d
				} else if d.Help != first.Help || d.Kind != kind {
					t.Fatalf("%s: %s has help %q, kind %s, elsewhere %q, %s", file, name, mf.GetHelp(), kind, first.Help, first.Kind)
				}
				key := dk + "\xff" + strings.Join(values, "\xff")
				if seen[key] {
					continue
				}
				seen[key] = true
				switch kind {
				case tree.Counter:
					b.Add(d, m.GetCounter().GetValue(), nil, values...)
				case tree.Gauge:
					b.Add(d, m.GetGauge().GetValue(), nil, values...)
				case tree.Histogram:
					h := m.GetHistogram()
					hv := tree.HistogramValue{Count: h.GetSampleCount(), Sum: h.GetSampleSum(), Buckets: make(map[float64]uint64)}
					for _, bk := range h.Bucket {
						hv.Buckets[bk.GetUpperBound()] = bk.GetCumulativeCount()
					}
					b.AddHistogram(d, hv, values...)
				}
			}
		}
	}
	return &tree.Snapshot{Samples: b.Samples()}, slices.Sorted(maps.Keys(firsts))
}

// TestStrictParsersAcceptBodies serves every collector's golden families
// after the registry main builds (build information, Go runtime, process,
// the handler's own and promhttp's metrics), as the exporter does, and
// checks both bodies with promtool and with the python client's parsers:
// OpenMetrics with the strict one, which refuses a family name seen
// twice, as client_golang's go_memstats_alloc_bytes (gauge) and
// go_memstats_alloc_bytes_total (counter) were (client_golang issue 829).
func TestStrictParsersAcceptBodies(t *testing.T) {
	netnstest.RequireTools(t, "promtool")
	requirePythonParser(t)
	snap, names := goldenSnapshot(t)
	reg := prom.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector("netfilter_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	h := NewHandler(snapSource{snap}, HandlerOpts{Gatherer: reg, Registerer: reg})
	url := serve(t, promhttpHandler(reg, h))
	for _, tt := range []struct {
		format Format
		accept string
	}{
		{Text, ""},
		{OpenMetrics, prometheus3Accept},
	} {
		t.Run(tt.format.String(), func(t *testing.T) {
			// Twice: the second body has promhttp's counts of the first.
			var body []byte
			for range 2 {
				var resp *http.Response
				resp, body = get(t, url, tt.accept, "gzip")
				body = gunzip(t, body)
				if f, _ := negotiate(http.Header{"Accept": {tt.accept}}); f != tt.format || resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %s", resp.Status, resp.Header.Get("Content-Type"))
				}
			}
			for _, want := range []string{"go_memstats_alloc_bytes ", "go_memstats_alloc_bytes_total ", "process_cpu_seconds_total ", "netfilter_exporter_build_info{"} {
				if !bytes.Contains(body, []byte("\n"+want)) {
					t.Errorf("the body has no sample %s", want)
				}
			}
			promtoolCheck(t, tt.format, body)
			if tt.format == OpenMetrics {
				prometheusOMCheck(t, body)
			}
			got := pythonCheck(t, tt.format, body)
			for _, name := range names {
				// Python names a counter's family without _total,
				// in both formats.
				if !slices.Contains(got, name) && !slices.Contains(got, strings.TrimSuffix(name, "_total")) {
					t.Errorf("python read no family %s of the golden files", name)
				}
			}
			if tt.format == OpenMetrics {
				// The counter is served, as unknown under its full name.
				if !slices.Contains(got, "go_memstats_alloc_bytes_total") || !slices.Contains(got, "go_memstats_alloc_bytes") {
					t.Errorf("python read no go_memstats_alloc_bytes or go_memstats_alloc_bytes_total: %q", got)
				}
			}
		})
	}
	if n := counterValue(t, reg, "netfilter_exporter_exposition_errors_total"); n != 0 {
		t.Errorf("%v samples or families left out", n)
	}
}

// promhttpHandler instruments h as main does.
func promhttpHandler(reg *prom.Registry, h *Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(reg, h))
	return mux
}

// counterValue returns the value of the counter name that reg gathers.
func counterValue(t *testing.T, reg *prom.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// pythonParseAll reads a JSON list of OpenMetrics bodies and parses each
// with the strict parser; it prints, for each, "ok" or the error.
const pythonParseAll = `
import json, sys
from prometheus_client.openmetrics import parser as om
for body in json.load(sys.stdin):
    try:
        list(om.text_string_to_metric_families(body))
        print("ok")
    except Exception as e:
        print(repr(e).replace("\n", " "))
`

// TestFuzzSeedBodiesPassStrictParsers renders FuzzRender's seeds, the
// collisions the fix is about, and gives their OpenMetrics bodies to the
// python strict parser and both bodies to promtool, which must parse them
// (its lint remarks on the seeds' made-up names aside). It checks that
// openMetricsToText, which the fuzz target uses, refuses nothing that
// python takes and accepts nothing that python refuses, on these bodies.
func TestFuzzSeedBodiesPassStrictParsers(t *testing.T) {
	netnstest.RequireTools(t, "promtool")
	requirePythonParser(t)
	var bodies []string
	for i, s := range fuzzSeeds {
		reg, snap := build(readFamilies(s))
		for _, f := range []Format{Text, OpenMetrics} {
			var buf bytes.Buffer
			if _, err := render(&buf, f, reg, snap); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("promtool", "check", "metrics")
			cmd.Stdin = bytes.NewReader(buf.Bytes())
			out, err := cmd.CombinedOutput()
			// OpenMetrics escapes a double quote in help (\"), which
			// the text format parser of Debian's promtool (2.42) does
			// not know; later ones, and expfmt's here, read it.
			oldEscape := f == OpenMetrics && bytes.Contains(out, []byte(`invalid escape sequence '\"'`))
			if exit, ok := err.(*exec.ExitError); err != nil && (!ok || exit.ExitCode() != 3) && !oldEscape {
				t.Errorf("seed %d, %s: promtool: %v\n%s\n%s", i, f, err, out, buf.Bytes())
			}
			if f == OpenMetrics {
				bodies = append(bodies, buf.String())
			}
		}
	}
	in, err := json.Marshal(bodies)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pythonPath, "-c", pythonParseAll)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	results := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(results) != len(bodies) {
		t.Fatalf("python read %d bodies of %d: %s", len(results), len(bodies), out)
	}
	for i, r := range results {
		_, goErr := openMetricsToText([]byte(bodies[i]))
		if r != "ok" || goErr != nil {
			t.Errorf("seed %d: python: %s; openMetricsToText: %v\n%s", i, r, goErr, bodies[i])
		}
	}
}
