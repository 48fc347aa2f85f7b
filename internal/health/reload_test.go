package health

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReload(t *testing.T) {
	tests := []struct {
		name      string
		lifecycle bool
		method    string
		err       error // what the reload returns
		code      int
		body      string
		reloads   int
	}{
		{"applied", true, http.MethodPost, nil, http.StatusOK, "", 1},
		{"applied by PUT", true, http.MethodPut, nil, http.StatusOK, "", 1},
		{"refused", true, http.MethodPost, errors.New("--config.file: c.yml: networks.lan[0]: \"x\" is not a CIDR"), http.StatusInternalServerError, "failed to reload config: --config.file: c.yml: networks.lan[0]: \"x\" is not a CIDR\n", 1},
		{"GET", true, http.MethodGet, nil, http.StatusMethodNotAllowed, "Only POST or PUT requests allowed\n", 0},
		{"without lifecycle", false, http.MethodPost, nil, http.StatusForbidden, "Lifecycle API is not enabled.\n", 0},
		{"GET without lifecycle", false, http.MethodGet, nil, http.StatusMethodNotAllowed, "Only POST or PUT requests allowed\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reloads := 0
			h := Reload(tt.lifecycle, func() error { reloads++; return tt.err })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, ReloadPath, strings.NewReader("")))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tt.code || string(body) != tt.body || reloads != tt.reloads {
				t.Errorf("%s %s: %d %q after %d reloads, want %d %q after %d", tt.method, ReloadPath, rec.Code, body, reloads, tt.code, tt.body, tt.reloads)
			}
			if tt.code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != "POST, PUT" {
				t.Errorf("Allow: %q, want POST, PUT", rec.Header().Get("Allow"))
			}
		})
	}
}
