package graphite

import (
	"bytes"
	"flag"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the tests gather")

// goldenHeader starts every golden file; the text parser ignores comments.
const goldenHeader = "# Written by `go test ./graphite -run TestNewRegistersOnce -update`: every metric a Writer registers, before it runs.\n"

// checkMetricsGolden compares everything reg gathers, every family, with a
// golden file (-update rewrites it).
func checkMetricsGolden(t *testing.T, reg *prometheus.Registry, golden string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
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
		t.Fatalf("%v (-update writes it)", err)
	}
	if !strings.HasPrefix(string(want), goldenHeader) {
		t.Errorf("%s does not start with the golden header: written by hand?", golden)
	}
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want)); err != nil {
		t.Errorf("%s: %v\n(-update rewrites it; review the diff)", golden, err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestWriterPathCollisionLoggedOnceAndCounted checks what a Writer does with
// snapshots in which two samples share a path: one warning for the life of
// the Writer, and the gauge netfilter_exporter_graphite_path_collisions
// holding the count of the latest push.
func TestWriterPathCollisionLoggedOnceAndCounted(t *testing.T) {
	logs := &logRecorder{}
	reg := prometheus.NewRegistry()
	cfg := validConfig()
	cfg.Registerer = reg
	w, err := New(cfg, nilSource{}, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	snap := func(ts int64, dups int) *tree.Snapshot {
		s := &tree.Snapshot{Time: time.Unix(ts, 0)}
		for range dups + 1 {
			s.Samples = append(s.Samples, tree.Sample{Desc: gaugeDesc, Path: []string{"nfacct", "x", "pkts"}, Value: float64(ts)})
		}
		return s
	}
	for ts, dups := range []int{2, 2, 1, 0} {
		w.queue(snap(int64(ts+1), dups), false)
		if v, _ := gatherValue(t, reg, metricPrefix+"path_collisions"); v != float64(dups) {
			t.Errorf("push %d: path_collisions = %v, want %d", ts, v, dups)
		}
	}
	if n := logs.count("WARN two samples of one snapshot have the same Graphite path"); n != 1 {
		t.Errorf("%d warnings, want 1: %q", n, logs.records)
	}
	if st := w.q.stats(); st.backlogLines != 4 {
		t.Errorf("%d lines queued for 4 pushes, want one each", st.backlogLines)
	}
}
