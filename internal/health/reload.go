package health

import (
	"fmt"
	"net/http"
)

// ReloadPath is where Reload is served.
const ReloadPath = "/-/reload"

// Reload returns the handler of ReloadPath, as Prometheus answers it: with
// lifecycle, POST and PUT call reload and answer once it has returned: 200
// when the configuration was applied, 500 with the reason when it was
// refused. Without lifecycle (--web.enable-lifecycle) they answer 403. Any
// other method answers 405.
func Reload(lifecycle bool, reload func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "Only POST or PUT requests allowed", http.StatusMethodNotAllowed)
			return
		}
		if !lifecycle {
			http.Error(w, "Lifecycle API is not enabled.", http.StatusForbidden)
			return
		}
		if err := reload(); err != nil {
			http.Error(w, fmt.Sprintf("failed to reload config: %s", err), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}
