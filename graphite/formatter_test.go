package graphite

import (
	"fmt"
	"math"
	"slices"
	"strconv"
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
	f := newFormatter("netfilter", '_', Cumulative)
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
			f := newFormatter("netfilter", '_', mode)
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
