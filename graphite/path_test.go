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

func TestEscapeElement(t *testing.T) {
	tests := []struct {
		name string
		in   string
		esc  byte
		want string
	}{
		{"plain", "web", '_', "web"},
		{"allowed punctuation", "a_b-C9", '_', "a_b-C9"},
		{"dot", "10.0.0.1", '_', "10_0_0_1"},
		{"colon", "tcp:80", '_', "tcp_80"},
		{"ipv6", "2001:db8::1", '_', "2001_db8__1"},
		{"slash and space", "10.0.0.0/8 lan", '_', "10_0_0_0_8_lan"},
		{"glob characters", "*?[]{}()", '_', "________"},
		{"semicolon and equals", "a;b=c", '_', "a_b_c"},
		{"empty", "", '_', "_"},
		{"non-ASCII, one escape per character", "zürich", '_', "z_rich"},
		{"emoji", "a😀b", '_', "a_b"},
		{"invalid UTF-8, one escape per byte", "a\xff\xfeb", '_', "a__b"},
		{"control characters", "a\tb\nc", '_', "a_b_c"},
		{"other escape char", "a.b", '-', "a-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EscapeElement(tt.in, tt.esc); got != tt.want {
				t.Errorf("EscapeElement(%q, %q) = %q, want %q", tt.in, tt.esc, got, tt.want)
			}
		})
	}
}

func TestSanitizePrefix(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"netfilter", "netfilter"},
		{"servers.fw1.netfilter", "servers.fw1.netfilter"},
		{".netfilter.", "netfilter"},
		{"a..b", "a.b"},
		{"...", ""},
		{"fw 1.net:filter", "fw_1.net_filter"},
		{"hôte.x", "h_te.x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := SanitizePrefix(tt.in, '_'); got != tt.want {
				t.Errorf("SanitizePrefix(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatPath(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		path   []string
		want   string
	}{
		{"simple", "netfilter", []string{"nfacct", "web", "pkts"}, "netfilter.nfacct.web.pkts"},
		{"no prefix", "", []string{"nfacct", "web"}, "nfacct.web"},
		{"prefix dropped to nothing", "..", []string{"a"}, "a"},
		{"dotted prefix", ".servers.fw1.", []string{"a"}, "servers.fw1.a"},
		{"element with dots never adds levels", "nf", []string{"conntrack", "10.1.2.3", "bytes"}, "nf.conntrack.10_1_2_3.bytes"},
		{"ipv6 element", "nf", []string{"host", "2001:db8::1"}, "nf.host.2001_db8__1"},
		{"empty element keeps its level", "nf", []string{"a", "", "b"}, "nf.a._.b"},
		{"non-ASCII element", "nf", []string{"règle", "pkts"}, "nf.r_gle.pkts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatPath(tt.prefix, tt.path, '_'); got != tt.want {
				t.Errorf("FormatPath(%q, %q) = %q, want %q", tt.prefix, tt.path, got, tt.want)
			}
		})
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{10, "10"},
		{-3, "-3"},
		{1e6, "1000000"},
		{1 << 53, "9007199254740992"},
		{1e21, "1000000000000000000000"},
		{0.5, "0.5"},
		{1.25e-7, "0.000000125"},
		{123.456, "123.456"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := FormatValue(tt.in); got != tt.want {
				t.Errorf("FormatValue(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatLine(t *testing.T) {
	tests := []struct {
		name   string
		path   []string
		v      float64
		want   string
		wantOK bool
	}{
		{"integer", []string{"nfacct", "web", "pkts"}, 10, "netfilter.nfacct.web.pkts 10 1700000000\n", true},
		{"fraction", []string{"x"}, 0.25, "netfilter.x 0.25 1700000000\n", true},
		{"NaN", []string{"x"}, math.NaN(), "", false},
		{"+Inf", []string{"x"}, math.Inf(1), "", false},
		{"-Inf", []string{"x"}, math.Inf(-1), "", false},
		{"no path", nil, 1, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FormatLine("netfilter", tt.path, tt.v, 1700000000, '_')
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("FormatLine = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

var (
	counterDesc = tree.NewDesc("nfacct_packets_total", "", tree.Counter, "name")
	gaugeDesc   = tree.NewDesc("conntrack_entries", "", tree.Gauge)
	histDesc    = tree.NewDesc("latency_seconds", "", tree.Histogram)
)

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
	got := f.format(snap)
	want := []string{"netfilter.a 1 100\n", "netfilter.nodesc 4 100\n", "netfilter.b 5 100\n"}
	if !slices.Equal(got, want) {
		t.Errorf("format = %q, want %q", got, want)
	}
	if got := f.format(nil); got != nil {
		t.Errorf("format(nil) = %q, want nil", got)
	}
}

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
			b.ReportAllocs()
			for b.Loop() {
				if len(f.format(snap)) == 0 && mode == Cumulative {
					b.Fatal("no lines")
				}
			}
		})
	}
}

func TestTaggedLines(t *testing.T) {
	bytes := tree.NewDesc("netfilter_conntrack_flow_bytes_total", "h", tree.Counter, "direction", "src", "family", "service")
	nfacctBytes := tree.NewDesc("netfilter_nfacct_bytes_total", "h", tree.Counter, "name", "family")
	plain := tree.NewDesc("netfilter_conntrack_events_total", "h", tree.Counter)
	snap := &tree.Snapshot{Time: time.Unix(1700000000, 0), Samples: []tree.Sample{
		{Desc: bytes, LabelValues: []string{"orig", "2001:db8::1", "ipv6", ""}, Path: []string{"x"}, Value: 1500},
		{Desc: bytes, LabelValues: []string{"reply", "bad;value with space", "~ipv4", "http"}, Path: []string{"y"}, Value: 7},
		{Desc: plain, Path: []string{"exporter", "events"}, Value: 3},
		{Desc: plain, Value: 9}, // no path: not sent, as in plain mode
		{Desc: nfacctBytes, LabelValues: []string{"ipv4.http", "ipv4"}, Path: []string{"z"}, Value: 5},
	}}
	f := newFormatter("netfilter", '_', Cumulative)
	f.tagged = true
	got := strings.Join(f.format(snap), "")
	want := "netfilter.conntrack_flow_bytes_total;direction=orig;family=ipv6;src=2001:db8::1 1500 1700000000\n" +
		"netfilter.conntrack_flow_bytes_total;direction=reply;family=_ipv4;service=http;src=bad_value_with_space 7 1700000000\n" +
		"netfilter.conntrack_events_total 3 1700000000\n" +
		"netfilter.nfacct_bytes_total;family=ipv4;object=ipv4.http 5 1700000000\n"
	if got != want {
		t.Errorf("tagged lines:\n%s\nwant:\n%s", got, want)
	}
}
