package health

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/exporter-toolkit/web"
)

const (
	// HealthyPath is where Healthy is served.
	HealthyPath = "/-/healthy"
	// ReadyPath is where Ready is served.
	ReadyPath = "/-/ready"
)

// Readiness tells what the exporter still waits for; *collector.Set is one.
type Readiness interface {
	// NotReady returns one line for each part that is not ready yet,
	// naming it and saying why; none means ready.
	NotReady() []string
}

// Healthy returns a handler that answers 200 to GET and HEAD while the
// process serves HTTP.
func Healthy(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "%s is Healthy.\n", name)
	})
}

// Ready returns a handler that answers 200 to GET and HEAD once r reports
// nothing not ready, and 503, with a line for each part not ready and why,
// until then.
func Ready(name string, r Readiness) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !allowed(w, req) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if waiting := r.NotReady(); len(waiting) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%s is not ready: collectors that have not succeeded yet:\n- %s\n", name, strings.Join(waiting, "\n- "))
			return
		}
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "%s is Ready.\n", name)
	})
}

// allowed answers 405 to anything but GET and HEAD.
func allowed(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// Register serves Healthy and Ready on mux at HealthyPath and ReadyPath.
func Register(mux *http.ServeMux, name string, r Readiness) {
	mux.Handle(HealthyPath, Healthy(name))
	mux.Handle(ReadyPath, Ready(name, r))
}

// LandingLinks are the landing page's links to both endpoints.
func LandingLinks() []web.LandingLinks {
	return []web.LandingLinks{
		{Address: HealthyPath, Text: "Health", Description: "200 while the exporter serves HTTP (liveness)"},
		{Address: ReadyPath, Text: "Readiness", Description: "200 once every enabled collector has succeeded once, 503 with the reasons before (readiness)"},
	}
}
