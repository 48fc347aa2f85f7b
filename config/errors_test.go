package config

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `""`},
		{"http", `"http"`},
		{strings.Repeat("1", maxQuoted), `"` + strings.Repeat("1", maxQuoted) + `"`},
		{strings.Repeat("1", 1_040_000), `"` + strings.Repeat("1", maxQuoted) + `…" (1040000 bytes)`},
		// Cut at a character boundary: é is two bytes, the 40th and 41st.
		{strings.Repeat("a", maxQuoted-1) + "é" + strings.Repeat("b", 10), `"` + strings.Repeat("a", maxQuoted-1) + `…" (51 bytes)`},
		{"tab\there" + strings.Repeat("x", maxQuoted), `"tab\there` + strings.Repeat("x", maxQuoted-8) + `…" (48 bytes)`},
	}
	for _, tt := range tests {
		got := quote(tt.in)
		if got != tt.want {
			t.Errorf("quote(%.50q) = %s, want %s", tt.in, got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("quote(%.50q) = %q, not valid UTF-8", tt.in, got)
		}
	}
}

// TestParseErrorsQuoteShort: an error about a 1 MB value quotes a short
// prefix of it and its length, so the error line stays under 1 KB, for
// every error that quotes a value (the others with a 10 KB value, which
// reads faster under the race detector).
func TestParseErrorsQuoteShort(t *testing.T) {
	long := strings.Repeat("1", 10_000)
	tests := []struct {
		name string
		yaml string
		want error
	}{
		{"port of 1 MB", "ports: [" + strings.Repeat("1", 1_040_000) + "]", errPort},
		{"port", "ports: [" + long + "]", errPort},
		{"port range", "ports: [\"9-" + long + "\"]", errPort},
		{"ports scalar", "ports: " + long, errShape},
		{"CIDR", "networks: {lan: [" + long + "]}", errCIDR},
		{"network name", "networks:\n  ? " + long + "\n  : [x]\n", errCIDR},
		{"network name twice", "networks:\n  ? " + long + "\n  : [10.0.0.0/8]\n  ? " + long + "\n  : [10.1.0.0/16]\n", errStructure},
		{"proto", "filters: {accept: [{proto: [" + long + "]}]}", errProto},
		{"zone", "filters: {accept: [{zone: [" + long + "]}]}", errZone},
		{"mark", "filters: {accept: [{mark: [" + long + "]}]}", errMark},
		{"dport", "filters: {accept: [{dport: [" + long + "]}]}", errPort},
		{"group_by", "conntrack: {group_by: [" + long + "]}", errGroupBy},
		{"max_series", "conntrack: {max_series: " + long + "}", errMaxSeries},
		{"unknown field", "? " + long + "\n: 1\n", errStructure},
		{"field twice", "conntrack:\n  ? " + long + "\n  : 1\n  ? " + long + "\n  : 2\n", errStructure},
		{"merge of a scalar", "conntrack: {<<: " + long + "}", errStructure},
		{"rules a scalar", "filters: {deny: " + long + "}", errStructure},
		{"unknown anchor", "ports: *" + long + "\n", errYAML},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "config.yml")
			if err == nil {
				t.Fatal("Parse() accepted the file")
			}
			msg := err.Error()
			if len(msg) >= 1024 {
				t.Errorf("error is %d bytes long, want under 1024: %.300s…", len(msg), msg)
			}
			if !strings.Contains(msg, "…") || !strings.Contains(msg, " bytes)") {
				t.Errorf("error does not give the value's length: %.1024s", msg)
			}
			if tt.want != nil && !strings.Contains(msg, tt.want.Error()) {
				t.Errorf("error %.1024s does not say %q", msg, tt.want)
			}
		})
	}
}
