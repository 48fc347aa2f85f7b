package health

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// pending is a Readiness the test sets.
type pending struct {
	mu    sync.Mutex
	names []string
}

func (p *pending) NotReady() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.names
}

func (p *pending) set(names ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = names
}

func TestEndpoints(t *testing.T) {
	p := &pending{}
	p.set("conntrack: no answer yet", "nfacct: operation not permitted (it needs CAP_NET_ADMIN)")
	mux := http.NewServeMux()
	Register(mux, "Netfilter Exporter", p)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	do := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, method, path string
		pending            []string
		code               int
		body               string
	}{
		{"healthy while collectors wait", "GET", HealthyPath, []string{"nfacct: no answer yet"}, 200, "Netfilter Exporter is Healthy.\n"},
		{"not ready while collectors wait or fail", "GET", ReadyPath, []string{"conntrack: no answer yet", "nfacct: operation not permitted (it needs CAP_NET_ADMIN)"}, 503,
			"Netfilter Exporter is not ready: collectors that have not succeeded yet:\n- conntrack: no answer yet\n- nfacct: operation not permitted (it needs CAP_NET_ADMIN)\n"},
		{"ready once all answered", "GET", ReadyPath, nil, 200, "Netfilter Exporter is Ready.\n"},
		{"HEAD ready", "HEAD", ReadyPath, nil, 200, ""},
		{"HEAD not ready", "HEAD", ReadyPath, []string{"nfacct: no answer yet"}, 503, ""},
		{"POST refused", "POST", HealthyPath, nil, 405, "method not allowed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.set(tt.pending...)
			code, body := do(tt.method, tt.path)
			if code != tt.code || body != tt.body {
				t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.path, code, body, tt.code, tt.body)
			}
		})
	}
}

func TestLandingLinksPointAtTheEndpoints(t *testing.T) {
	var got []string
	for _, l := range LandingLinks() {
		got = append(got, l.Address)
	}
	if strings.Join(got, " ") != HealthyPath+" "+ReadyPath {
		t.Errorf("landing links %q, want %s and %s", got, HealthyPath, ReadyPath)
	}
}
