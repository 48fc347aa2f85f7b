package exposition

import (
	"net/http"
	"testing"
)

func TestNegotiateEncoding(t *testing.T) {
	const (
		id   = codingIdentity
		gz   = codingGzip
		none = codingNone
	)
	for _, tt := range []struct {
		header []string // nil: no Accept-Encoding at all
		want   int
	}{
		{nil, id},
		{[]string{""}, id},
		{[]string{"gzip"}, gz},
		{[]string{"GZIP"}, gz},
		{[]string{"Gzip"}, gz},
		{[]string{"x-gzip"}, gz},
		{[]string{"deflate, gzip, br"}, gz},
		{[]string{"deflate,br"}, id},
		{[]string{"gzip;q=0"}, id},
		{[]string{"gzip;q=0.0"}, id},
		{[]string{"gzip;q=0.00"}, id},
		{[]string{"gzip;q=0.000"}, id},
		{[]string{"gzip;Q=0"}, id},
		{[]string{"GZIP;Q=0.0"}, id},
		{[]string{"gzip ; q=0"}, id},
		{[]string{"gzip;q = 0"}, id},
		{[]string{"gzip;\tq=0"}, id},
		{[]string{" gzip;q=0 , br"}, id},
		{[]string{"gzip;q=0.001"}, gz},
		{[]string{"gzip;q=1"}, gz},
		{[]string{"gzip;q=1.000"}, gz},
		{[]string{"gzip;q=2"}, id},      // not a q-value: dropped
		{[]string{"gzip;q=0.0001"}, id}, // four decimals: dropped
		{[]string{"gzip;q=abc"}, id},
		{[]string{"*"}, gz},
		{[]string{"*;q=0"}, none},
		{[]string{"gzip, *;q=0"}, gz},
		{[]string{"gzip;q=0, *;q=0"}, none},
		{[]string{"*;q=0, gzip"}, gz},
		{[]string{"gzip;q=0, *"}, id},
		{[]string{"identity;q=0"}, none},
		{[]string{"gzip, identity;q=0"}, gz},
		{[]string{"gzip;q=0, identity;q=0"}, none},
		{[]string{"identity;q=0, *"}, gz},
		{[]string{"identity, gzip;q=0.5"}, id},
		{[]string{"gzip;q=0.5, identity;q=0.5"}, gz},
		{[]string{"gzip;q=0.4, *;q=0.5"}, id},
		{[]string{"br", "gzip"}, gz}, // two header lines
		{[]string{"gzip", "gzip;q=0"}, gz},
	} {
		h := http.Header{}
		if tt.header != nil {
			h["Accept-Encoding"] = tt.header
		}
		if got := negotiateEncoding(h); got != tt.want {
			t.Errorf("Accept-Encoding %q: %d, want %d (identity %d, gzip %d, none %d)", tt.header, got, tt.want, id, gz, none)
		}
	}
}

func TestNegotiateFormat(t *testing.T) {
	const (
		text  = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
		om1   = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
		om001 = "application/openmetrics-text; version=0.0.1; charset=utf-8; escaping=underscores"
	)
	for _, tt := range []struct {
		accept, want string
	}{
		{"", text},
		{"*/*", text},
		{"application/openmetrics-text", om1},
		{"APPLICATION/OpenMetrics-Text", om1},
		{"application/openmetrics-text;VERSION=1.0.0", om1},
		{`application/openmetrics-text;version="1.0.0"`, om1},
		{"application/openmetrics-text;version=0.0.1", om001},
		{"application/openmetrics-text;version=2.0.0", text},
		// q=0 is not acceptable.
		{"application/openmetrics-text;q=0", text},
		{"application/openmetrics-text;q=0.0", text},
		{"application/openmetrics-text;Q=0", text},
		{"application/openmetrics-text ; q=0", text},
		{"application/openmetrics-text;version=1.0.0;q=0", text},
		{"application/openmetrics-text;version=1.0.0;q=0, application/openmetrics-text;version=0.0.1", om001},
		{"application/openmetrics-text;q=0, */*", text},
		{"application/*", om1},
		{"application/*;q=0, */*", text},
		{"text/plain;q=0, */*", om1},
		{"text/plain;q=0, application/openmetrics-text;q=0", text},
		// The highest weight wins, wherever it is in the list.
		{"text/plain;q=0.5, application/openmetrics-text", om1},
		{"application/openmetrics-text;q=0.5, text/plain", text},
		{"*/*;q=1, application/openmetrics-text;q=0.5", text},
		{"application/openmetrics-text;q=0.5, */*;q=0.6", text},
		{"application/openmetrics-text;version=0.0.1;q=0.9, application/openmetrics-text;version=1.0.0;q=0.8", om001},
		// Equal weights: the one first in the header.
		{"application/openmetrics-text, text/plain", om1},
		{"text/plain, application/openmetrics-text", text},
		// A more specific range overrides a wider one.
		{"application/openmetrics-text;version=1.0.0;q=0.1, application/openmetrics-text;q=0.9", om001},
		{"text/plain;version=0.0.4;q=0.9, text/plain;q=0", text},
		{"text/plain;version=1.0.0, application/openmetrics-text;q=0.2", om1},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", text},
		{prometheus2Accept, om1},
		{"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8", "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"},
		{"application/openmetrics-text;version=1.0.0;escaping=bogus", om1},
	} {
		if _, got := negotiate(http.Header{"Accept": {tt.accept}}); got != tt.want {
			t.Errorf("Accept %q: %q, want %q", tt.accept, got, tt.want)
		}
	}
	// Two header lines make one list.
	if _, got := negotiate(http.Header{"Accept": {"text/plain;q=0.1", "application/openmetrics-text"}}); got != om1 {
		t.Errorf("two Accept lines: %q", got)
	}
}

// TestHandlerNegotiatesEncoding checks the handler's answers: gzip whatever
// the case, identity for q=0, 406 when neither is acceptable.
func TestHandlerNegotiatesEncoding(t *testing.T) {
	url := serve(t, NewHandler(newCountingSource(3), HandlerOpts{}))
	for _, tt := range []struct {
		enc    string
		status int
		gzip   bool
	}{
		{"GZIP", http.StatusOK, true},
		{"x-gzip;q=0.5", http.StatusOK, true},
		{"gzip;Q=0", http.StatusOK, false},
		{"gzip; q=0.0", http.StatusOK, false},
		{"*;q=0", http.StatusNotAcceptable, false},
		{"identity;q=0", http.StatusNotAcceptable, false},
		{"gzip, *;q=0", http.StatusOK, true},
	} {
		resp, body := get(t, url, "", tt.enc)
		if resp.StatusCode != tt.status {
			t.Errorf("Accept-Encoding %q: %s, want %d", tt.enc, resp.Status, tt.status)
			continue
		}
		if gz := resp.Header.Get("Content-Encoding") == "gzip"; gz != tt.gzip {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q", tt.enc, resp.Header.Get("Content-Encoding"))
			continue
		}
		if tt.status != http.StatusOK {
			continue
		}
		if tt.gzip {
			body = gunzip(t, body)
		}
		if _, err := parseText(body); err != nil || len(body) == 0 {
			t.Errorf("Accept-Encoding %q: %v", tt.enc, err)
		}
		if got := resp.Header.Values("Vary"); len(got) != 2 || got[0] != "Accept" || got[1] != "Accept-Encoding" {
			t.Errorf("Vary %q", got)
		}
	}
}
