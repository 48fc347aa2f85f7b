package prometheus

import (
	"net/http"
	"strings"

	"github.com/munnerz/goautoneg"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The Content-Types served, before their escaping scheme.
var (
	fmtText              = expfmt.NewFormat(expfmt.TypeTextPlain)
	fmtOpenMetrics100, _ = expfmt.NewOpenMetricsFormat(expfmt.OpenMetricsVersion_1_0_0)
	fmtOpenMetrics001, _ = expfmt.NewOpenMetricsFormat(expfmt.OpenMetricsVersion_0_0_1)
)

// negotiate picks the format of a response from the Accept header, the
// first acceptable of OpenMetrics (1.0.0, or 0.0.1, served the same way) and
// the text format (0.0.4), in the client's order of preference, and returns
// it with its Content-Type. Protocol buffers are not served: a client that
// prefers them gets its next choice, as Prometheus does when it asks for
// them first. The text format is the default.
func negotiate(h http.Header) (Format, string) {
	escaping := model.EscapeUnderscores
	for _, ac := range goautoneg.ParseAccept(h.Get("Accept")) {
		if e := ac.Params[model.EscapingKey]; e != "" {
			if _, err := model.ToEscapingScheme(e); err == nil {
				// Every name served is a valid legacy name, the
				// same under every escaping scheme.
				escaping = e
			}
		}
		ver := ac.Params["version"]
		switch ac.Type + "/" + ac.SubType {
		case "text/plain":
			if ver == expfmt.TextVersion || ver == "" {
				return Text, string(fmtText) + "; escaping=" + escaping
			}
		case expfmt.OpenMetricsType:
			switch ver {
			case expfmt.OpenMetricsVersion_1_0_0, "":
				return OpenMetrics, string(fmtOpenMetrics100) + "; escaping=" + escaping
			case expfmt.OpenMetricsVersion_0_0_1:
				return OpenMetrics, string(fmtOpenMetrics001) + "; escaping=" + escaping
			}
		}
	}
	return Text, string(fmtText) + "; escaping=" + escaping
}

// acceptsGzip reports whether the client accepts a gzip-encoded body.
func acceptsGzip(h http.Header) bool {
	for _, part := range strings.Split(h.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) != "gzip" {
			continue
		}
		// gzip;q=0 refuses it.
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
