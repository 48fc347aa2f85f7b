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
	f := newFormatter("p", '_', Delta)
	for i, step := range steps {
		snap := &tree.Snapshot{Time: time.Unix(int64(i+1), 0)}
		for _, p := range step.points {
			snap.Samples = append(snap.Samples, tree.Sample{Desc: p.desc, Path: []string{p.path}, Value: p.value})
		}
		got := f.format(snap)
		if !slices.Equal(got, step.want) {
			t.Fatalf("step %d (%s): format = %q, want %q", i, step.name, got, step.want)
		}
	}
}

func TestFormatterDeltaKeepsCollidingPathsApart(t *testing.T) {
	// "a.b" and "a:b" escape to the same element but are different objects.
	f := newFormatter("p", '_', Delta)
	for i, vals := range [][2]float64{{10, 1000}, {11, 1005}} {
		snap := &tree.Snapshot{Time: time.Unix(int64(i), 0), Samples: []tree.Sample{
			{Desc: counterDesc, Path: []string{"a.b"}, Value: vals[0]},
			{Desc: counterDesc, Path: []string{"a:b"}, Value: vals[1]},
		}}
		got := f.format(snap)
		if i == 1 && !slices.Equal(got, []string{"p.a_b 1 1\n", "p.a_b 5 1\n"}) {
			t.Errorf("format = %q", got)
		}
	}
}
