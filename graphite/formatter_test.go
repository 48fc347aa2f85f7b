package graphite

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

var (
	counterDesc = tree.NewDesc("nfacct_packets_total", "", tree.Counter, "name")
	gaugeDesc   = tree.NewDesc("conntrack_entries", "", tree.Gauge)
	histDesc    = tree.NewDesc("latency_seconds", "", tree.Histogram)
)

// lines is a lineSink that keeps each line as a string.
type lines []string

func (l *lines) add(line []byte) { *l = append(*l, string(line)) }

// formatLines returns the lines f.format writes for snap, nil if none.
func formatLines(f *formatter, snap *tree.Snapshot) []string {
	var out lines
	if n := f.format(snap, &out); n != len(out) {
		panic(fmt.Sprintf("format returned %d for %d lines", n, len(out)))
	}
	return out
}

func TestFormatterSkips(t *testing.T) {
	f := newFormatter("netfilter", Cumulative)
	snap := &tree.Snapshot{
		Time: time.Unix(100, 0),
		Samples: []tree.Sample{
			{Desc: counterDesc, Path: []string{"a"}, Value: 1},
			{Desc: counterDesc, Path: nil, Value: 2},
			{Desc: counterDesc, Path: []string{}, Value: 3},
			{Desc: gaugeDesc, Path: []string{"nan"}, Value: math.NaN()},
			{Desc: gaugeDesc, Path: []string{"inf"}, Value: math.Inf(1)},
			{Desc: histDesc, Path: []string{"h"}, Histogram: &tree.HistogramValue{Count: 1}},
			{Desc: nil, Path: []string{"nodesc"}, Value: 4},
			{Desc: gaugeDesc, Path: []string{"b"}, Value: 5},
		},
	}
	got := formatLines(f, snap)
	want := []string{"netfilter.a 1 100\n", "netfilter.nodesc 4 100\n", "netfilter.b 5 100\n"}
	if !slices.Equal(got, want) {
		t.Errorf("format = %q, want %q", got, want)
	}
	if got := formatLines(f, nil); got != nil {
		t.Errorf("format(nil) = %q, want nil", got)
	}
}

// TestFormatterLeaf checks samples whose Desc ends their path (tree.Desc's
// Leaf, for samples of one series that share a Path): the line holds both,
// and in Delta mode each keeps a baseline of its own.
func TestFormatterLeaf(t *testing.T) {
	orig := tree.NewDesc("netfilter_conntrack_flow_bytes_total", "", tree.Counter, "direction").WithLeaf("orig", "bytes")
	reply := tree.NewDesc("netfilter_conntrack_flow_bytes_total", "", tree.Counter, "direction").WithLeaf("reply", "bytes")
	alone := tree.NewDesc("netfilter_conntrack_flows_total", "", tree.Counter).WithLeaf("flows")
	head := []string{"conntrack", "10.0.0.1"}
	snap := func(ts int64, o, r float64) *tree.Snapshot {
		return &tree.Snapshot{Time: time.Unix(ts, 0), Samples: []tree.Sample{
			{Desc: orig, Path: head, Value: o},
			{Desc: reply, Path: head, Value: r},
			{Desc: alone, Path: []string{}, Value: 7}, // the leaf alone
			{Desc: alone, Path: nil, Value: 8},        // kept out of Graphite
		}}
	}
	f := newFormatter("nf", Cumulative)
	want := []string{"nf.conntrack.10%2E0%2E0%2E1.orig.bytes 100 1\n", "nf.conntrack.10%2E0%2E0%2E1.reply.bytes 40 1\n", "nf.flows 7 1\n"}
	if got := formatLines(f, snap(1, 100, 40)); !slices.Equal(got, want) {
		t.Errorf("cumulative = %q, want %q", got, want)
	}
	f = newFormatter("nf", Delta)
	formatLines(f, snap(1, 100, 40))
	want = []string{"nf.conntrack.10%2E0%2E0%2E1.orig.bytes 5 2\n", "nf.conntrack.10%2E0%2E0%2E1.reply.bytes 1 2\n", "nf.flows 0 2\n"}
	if got := formatLines(f, snap(2, 105, 41)); !slices.Equal(got, want) {
		t.Errorf("delta = %q, want %q", got, want)
	}
}

func BenchmarkFormatSnapshot(b *testing.B) {
	snap := &tree.Snapshot{Time: time.Unix(1700000000, 0)}
	for i := range 1000 {
		snap.Samples = append(snap.Samples, tree.Sample{
			Desc:  counterDesc,
			Path:  []string{"conntrack", "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256), "bytes"},
			Value: float64(i) * 1234567,
		})
	}
	for _, mode := range []Mode{Cumulative, Delta} {
		b.Run(fmt.Sprint(mode), func(b *testing.B) {
			f := newFormatter("netfilter", mode)
			q := newQueue(0, 1<<30, 0, 0)
			defer q.release()
			b.ReportAllocs()
			for b.Loop() {
				batch := q.newBatch()
				if f.format(snap, batch) == 0 && mode == Cumulative {
					b.Fatal("no lines")
				}
				batch.push()
				drain(q)
			}
		})
	}
}

// TestFormatterPathCollision checks the backstop against two samples of one
// snapshot on one path: the first is sent, the second left out and counted,
// in both modes and tagged, and the count is that of the latest snapshot.
func TestFormatterPathCollision(t *testing.T) {
	tagged := tree.NewDesc("netfilter_nfacct_bytes_total", "", tree.Gauge, "name")
	for _, tt := range []struct {
		name   string
		mode   Mode
		tagged bool
		want   []string
	}{
		{"cumulative", Cumulative, false, []string{"p.nfacct.x.pkts 1 2\n", "p.other 3 2\n"}},
		{"delta", Delta, false, []string{"p.nfacct.x.pkts 1 2\n", "p.other 3 2\n"}},
		{"tagged", Cumulative, true, []string{"p.nfacct_bytes_total;object=x 1 2\n", "p.conntrack_entries 3 2\n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFormatter("p", tt.mode)
			f.tagged = tt.tagged
			d := gaugeDesc
			if tt.tagged {
				d = tagged
			}
			snap := func(ts int64, dup bool) *tree.Snapshot {
				s := &tree.Snapshot{Time: time.Unix(ts, 0), Samples: []tree.Sample{
					{Desc: d, LabelValues: []string{"x"}, Path: []string{"nfacct", "x", "pkts"}, Value: 1},
					{Desc: gaugeDesc, Path: []string{"other"}, Value: 3},
				}}
				if dup {
					s.Samples = append(s.Samples, tree.Sample{Desc: d, LabelValues: []string{"x"}, Path: []string{"nfacct", "x", "pkts"}, Value: 2})
				}
				return s
			}
			for ts := int64(1); ts <= 2; ts++ {
				got := formatLines(f, snap(ts, true))
				if ts == 2 && !slices.Equal(got, tt.want) {
					t.Errorf("lines = %q, want %q", got, tt.want)
				}
				if n := f.collisions.Load(); n != 1 {
					t.Errorf("snapshot %d: %d collisions, want 1", ts, n)
				}
			}
			if p := f.collided.Load(); p == nil || *p != strings.Fields(tt.want[0])[0] {
				t.Errorf("collided = %v, want %q", p, strings.Fields(tt.want[0])[0])
			}
			formatLines(f, snap(3, false))
			if n := f.collisions.Load(); n != 0 {
				t.Errorf("%d collisions in a snapshot without any, want 0", n)
			}
		})
	}
}

func TestPathSet(t *testing.T) {
	var s pathSet
	for round := range 2 {
		for i := range uint64(5000) {
			if !s.add(i * 0x9e3779b97f4a7c15) {
				t.Fatalf("round %d: %d already in the set", round, i)
			}
		}
		for i := range uint64(5000) {
			if s.add(i * 0x9e3779b97f4a7c15) {
				t.Fatalf("round %d: %d added twice", round, i)
			}
		}
		if s.n != 5000 || len(s.slots) < 2*s.n {
			t.Fatalf("round %d: %d hashes in %d slots", round, s.n, len(s.slots))
		}
		s.reset()
	}
}
