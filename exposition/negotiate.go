package exposition

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The Content-Types served, before their escaping scheme.
var (
	fmtText              = expfmt.NewFormat(expfmt.TypeTextPlain)
	fmtOpenMetrics100, _ = expfmt.NewOpenMetricsFormat(expfmt.OpenMetricsVersion_1_0_0)
	fmtOpenMetrics001, _ = expfmt.NewOpenMetricsFormat(expfmt.OpenMetricsVersion_0_0_1)
)

// representation is one Content-Type the handler can serve.
type representation struct {
	typ, subtype, version string
	format                Format
	contentType           string
}

// representations are the Content-Types served, in the server's order of
// preference among those a client weighs equally: the text format first,
// so that */* (curl) gets it.
var representations = [...]representation{
	{"text", "plain", expfmt.TextVersion, Text, string(fmtText)},
	{"application", "openmetrics-text", expfmt.OpenMetricsVersion_1_0_0, OpenMetrics, string(fmtOpenMetrics100)},
	{"application", "openmetrics-text", expfmt.OpenMetricsVersion_0_0_1, OpenMetrics, string(fmtOpenMetrics001)},
}

// element is one member of an Accept or Accept-Encoding list: a media range
// or a content coding, lower case, with its weight and parameters.
type element struct {
	value string
	q     float64
	// params holds the parameters other than q, names in lower case.
	params map[string]string
}

// parseList parses the members of a comma-separated list with parameters
// and weights (RFC 9110, sections 5.6.1, 5.6.6 and 12.4.2) from every value
// of a header field. Names and parameter names are case-insensitive and
// are returned in lower case; quoted parameter values are unquoted. A
// member whose weight is not a valid q-value is dropped: it cannot be
// told apart from one that is not acceptable.
func parseList(values []string) []element {
	var out []element
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			name = strings.ToLower(strings.Trim(name, " \t"))
			if name == "" {
				continue
			}
			e := element{value: name, q: 1}
			ok := true
			for p := range strings.SplitSeq(params, ";") {
				k, val, _ := strings.Cut(p, "=")
				k = strings.ToLower(strings.Trim(k, " \t"))
				val = strings.Trim(val, " \t")
				if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				switch k {
				case "":
				case "q":
					e.q, ok = parseQ(val)
				default:
					if e.params == nil {
						e.params = make(map[string]string)
					}
					e.params[k] = val
				}
			}
			if ok {
				out = append(out, e)
			}
		}
	}
	return out
}

// parseQ parses a q-value: "0" or "1", or either with up to three decimals,
// those of 1 zeros (RFC 9110, section 12.4.2).
func parseQ(s string) (float64, bool) {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	if len(s) > 1 && (s[1] != '.' || len(s) > 5) {
		return 0, false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' || (s[0] == '1' && s[i] != '0') {
			return 0, false
		}
	}
	q, err := strconv.ParseFloat(s, 64)
	return q, err == nil
}

// negotiate picks the format of a response from the Accept header (RFC
// 9110, section 12.5.1) and returns it with its Content-Type. Each format
// served, OpenMetrics (1.0.0, or 0.0.1, served the same way) and the text
// format (0.0.4), takes the weight of the most specific media range that
// matches it: one with its version, then its type and subtype, then its
// type and *, then */*. A range with another version does not match. The
// format of highest weight above 0 is served; among equal weights, the one
// whose range comes first in the header, then the text format. Protocol
// buffers are not served: a client that prefers them gets its next choice,
// as Prometheus does when it asks for them first. When nothing served is
// acceptable (no Accept, or only q=0 for what is served), the text format
// is served, as if there were no Accept header.
func negotiate(h http.Header) (Format, string) {
	ranges := parseList(h.Values("Accept"))
	best, bestQ, bestPos := 0, 0.0, len(ranges)
	for i, rep := range representations {
		q, pos, spec := 0.0, -1, -1
		for j, r := range ranges {
			typ, sub, _ := strings.Cut(r.value, "/")
			ver, hasVer := r.params["version"]
			var s int
			switch {
			case typ == rep.typ && sub == rep.subtype && hasVer:
				if ver != rep.version {
					continue
				}
				s = 3
			case typ == rep.typ && sub == rep.subtype:
				s = 2
			case typ == rep.typ && sub == "*":
				s = 1
			case typ == "*" && sub == "*":
				s = 0
			default:
				continue
			}
			if s > spec {
				q, pos, spec = r.q, j, s
			}
		}
		if q > bestQ || (q == bestQ && q > 0 && pos < bestPos) {
			best, bestQ, bestPos = i, q, pos
		}
	}
	escaping := model.EscapeUnderscores
	if bestQ > 0 {
		if e := ranges[bestPos].params[model.EscapingKey]; e != "" {
			if _, err := model.ToEscapingScheme(e); err == nil {
				// Every name served is a valid legacy name, the same
				// under every escaping scheme.
				escaping = e
			}
		}
	} else {
		best = 0
	}
	rep := representations[best]
	return rep.format, rep.contentType + "; escaping=" + escaping
}

// The content codings negotiate can choose.
const (
	codingIdentity = iota
	codingGzip
	// codingNone means no coding served is acceptable.
	codingNone
)

// negotiateEncoding picks the content coding of a response from the
// Accept-Encoding header (RFC 9110, section 12.5.3): gzip (or x-gzip) and
// identity take the weight of their own member, else that of *; else gzip
// is not acceptable, and identity is, below any coding the client names
// (gzip;q=0.5 alone asks for gzip). Names are case-insensitive and q=0
// means not acceptable. Without the header, or with an empty one, the body
// is not compressed. The coding of higher weight wins, gzip on a tie;
// codingNone when neither is acceptable (say identity;q=0 or *;q=0 alone).
func negotiateEncoding(h http.Header) int {
	vals := h.Values("Accept-Encoding")
	if len(vals) == 0 {
		return codingIdentity
	}
	gz, id, star := -1.0, -1.0, -1.0
	for _, e := range parseList(vals) {
		switch e.value {
		case "gzip", "x-gzip":
			gz = max(gz, e.q)
		case "identity":
			id = max(id, e.q)
		case "*":
			star = max(star, e.q)
		}
	}
	if gz < 0 {
		gz = max(star, 0)
	}
	if id < 0 {
		// Acceptable, below any coding named.
		id = 0.0001
		if star >= 0 {
			id = star
		}
	}
	switch {
	case gz > 0 && gz >= id:
		return codingGzip
	case id > 0:
		return codingIdentity
	}
	return codingNone
}
