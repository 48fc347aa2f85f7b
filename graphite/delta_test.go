package graphite

import (
	"slices"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

func TestFormatterDelta(t *testing.T) {
	type point struct {
		desc  *tree.Desc
		path  string
		value float64
	}
	steps := []struct {
		name   string
		points []point
		want   []string
	}{
		{
			name:   "first sighting sends no counter",
			points: []point{{counterDesc, "c", 100}, {gaugeDesc, "g", 7}},
			want:   []string{"p.g 7 1\n"},
		},
		{
			name:   "increase",
			points: []point{{counterDesc, "c", 130}, {gaugeDesc, "g", 3}},
			want:   []string{"p.c 30 2\n", "p.g 3 2\n"},
		},
		{
			name:   "no change",
			points: []point{{counterDesc, "c", 130}},
			want:   []string{"p.c 0 3\n"},
		},
		{
			name:   "reset sends the new value",
			points: []point{{counterDesc, "c", 20}, {counterDesc, "d", 5}},
			want:   []string{"p.c 20 4\n"},
		},
		{
			name:   "new path next to known one",
			points: []point{{counterDesc, "c", 25}, {counterDesc, "d", 9}},
			want:   []string{"p.c 5 5\n", "p.d 4 5\n"},
		},
		{
			name:   "path gone",
			points: []point{{counterDesc, "d", 10}},
			want:   []string{"p.d 1 6\n"},
		},
		{
			name:   "path back after missing a snapshot has no baseline",
			points: []point{{counterDesc, "c", 40}, {counterDesc, "d", 12}},
			want:   []string{"p.d 2 7\n"},
		},
	}
	f := newFormatter("p", Delta)
	for i, step := range steps {
		snap := &tree.Snapshot{Time: time.Unix(int64(i+1), 0)}
		for _, p := range step.points {
			snap.Samples = append(snap.Samples, tree.Sample{Desc: p.desc, Path: []string{p.path}, Value: p.value})
		}
		got := formatLines(f, snap)
		if !slices.Equal(got, step.want) {
			t.Fatalf("step %d (%s): format = %q, want %q", i, step.name, got, step.want)
		}
	}
}

func TestFormatterDeltaKeepsEscapedPathsApart(t *testing.T) {
	// "a.b" and "a:b" were one element under the old escaping; they are two
	// paths, each with its own baseline.
	f := newFormatter("p", Delta)
	for i, vals := range [][2]float64{{10, 1000}, {11, 1005}} {
		snap := &tree.Snapshot{Time: time.Unix(int64(i), 0), Samples: []tree.Sample{
			{Desc: counterDesc, Path: []string{"a.b"}, Value: vals[0]},
			{Desc: counterDesc, Path: []string{"a:b"}, Value: vals[1]},
		}}
		got := formatLines(f, snap)
		if i == 1 && !slices.Equal(got, []string{"p.a%2Eb 1 1\n", "p.a:b 5 1\n"}) {
			t.Errorf("format = %q", got)
		}
	}
}

// TestFormatterDeltaFinal checks the last snapshot in Delta mode: stamped
// with the previous snapshot's time, each counter carries what was sent then
// plus the increase since, so that it replaces that point in carbon.
func TestFormatterDeltaFinal(t *testing.T) {
	snap := func(ts int64, ps ...tree.Sample) *tree.Snapshot {
		return &tree.Snapshot{Time: time.Unix(ts, 0), Samples: ps}
	}
	c := func(path string, v float64) tree.Sample {
		return tree.Sample{Desc: counterDesc, Path: []string{path}, Value: v}
	}
	g := func(path string, v float64) tree.Sample {
		return tree.Sample{Desc: gaugeDesc, Path: []string{path}, Value: v}
	}

	f := newFormatter("p", Delta)
	formatLines(f, snap(1, c("c", 100), c("r", 50)))
	if got, want := formatLines(f, snap(2, c("c", 130), c("r", 10), c("d", 5), g("g", 3))), []string{"p.c 30 2\n", "p.r 10 2\n", "p.g 3 2\n"}; !slices.Equal(got, want) {
		t.Fatalf("second snapshot = %q, want %q", got, want)
	}
	var out lines
	f.formatFinal(snap(9, c("c", 150), c("r", 12), c("d", 9), c("new", 1), g("g", 4)), &out)
	want := []string{
		"p.c 50 2\n", // 30 sent at 2, plus 20 since
		"p.r 12 2\n", // 10 sent at 2 (after a reset), plus 2 since
		"p.d 4 2\n",  // first seen at 2: nothing was sent then
		"p.g 4 2\n",  // gauges as they are
	}
	if !slices.Equal(out, want) {
		t.Errorf("final snapshot = %q, want %q", out, want)
	}

	// Without a previous snapshot, the final one is a first one.
	f = newFormatter("p", Delta)
	out = nil
	f.formatFinal(snap(5, c("c", 1), g("g", 2)), &out)
	if want := []string{"p.g 2 5\n"}; !slices.Equal(out, want) {
		t.Errorf("final snapshot alone = %q, want %q", out, want)
	}

	// In Cumulative mode the final snapshot is an ordinary one.
	f = newFormatter("p", Cumulative)
	formatLines(f, snap(1, c("c", 1)))
	out = nil
	f.formatFinal(snap(5, c("c", 3)), &out)
	if want := []string{"p.c 3 5\n"}; !slices.Equal(out, want) {
		t.Errorf("cumulative final snapshot = %q, want %q", out, want)
	}
}
