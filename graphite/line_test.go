package graphite

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

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
		{"element with dots never adds levels", "nf", []string{"conntrack", "10.1.2.3", "bytes"}, "nf.conntrack.10%2E1%2E2%2E3.bytes"},
		{"ipv6 element", "nf", []string{"host", "2001:db8::1"}, "nf.host.2001:db8::1"},
		{"empty element keeps its level", "nf", []string{"a", "", "b"}, "nf.a.%.b"},
		{"non-ASCII element", "nf", []string{"règle", "pkts"}, "nf.r%C3%A8gle.pkts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatPath(tt.prefix, tt.path); got != tt.want {
				t.Errorf("formatPath(%q, %q) = %q, want %q", tt.prefix, tt.path, got, tt.want)
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
			if got := formatValue(tt.in); got != tt.want {
				t.Errorf("formatValue(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestAppendValueMatchesFormatFloat checks that the integer path of
// appendValue writes exactly what strconv.FormatFloat does.
func TestAppendValueMatchesFormatFloat(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, -0.5, 1e15, 1e16, 1 << 53, 1<<53 - 1, -(1<<53 - 1),
		1<<53 + 2, 1e21, 1e22, 123456789012345680, math.MaxInt64, math.MinInt64, math.MaxFloat64,
		math.SmallestNonzeroFloat64, 4.000000000000001, 1e-7}
	for i := 0; i < 100_000; i++ {
		// Integers of every magnitude, and their neighbours.
		v := math.Ldexp(float64(i%4096+1), i%70) * float64(1-2*(i%2))
		vals = append(vals, v, math.Nextafter(v, 0), math.Nextafter(v, math.Inf(1)))
	}
	for _, v := range vals {
		if got, want := string(appendValue(nil, v)), strconv.FormatFloat(v, 'f', -1, 64); got != want {
			t.Fatalf("appendValue(%v) = %q, want %q", v, got, want)
		}
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
			got, ok := formatLine("netfilter", tt.path, tt.v, 1700000000)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("formatLine = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
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
	f := newFormatter("netfilter", Cumulative)
	f.tagged = true
	got := strings.Join(formatLines(f, snap), "")
	want := "netfilter.conntrack_flow_bytes_total;direction=orig;family=ipv6;src=2001:db8::1 1500 1700000000\n" +
		"netfilter.conntrack_flow_bytes_total;direction=reply;family=%7Eipv4;service=http;src=bad%3Bvalue%20with%20space 7 1700000000\n" +
		"netfilter.conntrack_events_total 3 1700000000\n" +
		"netfilter.nfacct_bytes_total;family=ipv4;object=ipv4.http 5 1700000000\n"
	if got != want {
		t.Errorf("tagged lines:\n%s\nwant:\n%s", got, want)
	}
}

// formatPath returns the Graphite path of a point: the sanitised prefix
// followed by one escaped level per element of path, separated by dots.
func formatPath(prefix string, path []string) string {
	return string(appendPath(nil, sanitizePrefix(prefix), path, nil))
}

// formatValue returns v as carbon expects it: integers without exponent or
// decimals, other values with the fewest digits that represent them exactly.
// It must not be called with NaN or an infinity, which Graphite cannot store.
func formatValue(v float64) string {
	return string(appendValue(nil, v))
}

// formatLine returns the plaintext line of one point, terminated by a newline.
// prefix is sanitised as sanitizePrefix does. ok is false, and the line empty,
// when v is NaN or infinite or when path has no element.
func formatLine(prefix string, path []string, v float64, ts int64) (line string, ok bool) {
	if !finite(v) || len(path) == 0 {
		return "", false
	}
	return string(appendLine(nil, sanitizePrefix(prefix), path, nil, v, ts)), true
}
