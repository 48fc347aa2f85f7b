package exposition

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TopSource gives readings of the top talkers; the conntrack pipeline is
// one.
type TopSource interface {
	Top(ctx context.Context) (TopReading, error)
}

// TopReading is what /top and /top.json show: the top talkers over the
// window and the flows that moved the most bytes since the previous dump.
type TopReading struct {
	// Enabled reports that top talkers are on (--conntrack.top.count > 0).
	// When it is false the rest is ignored.
	Enabled bool
	// Keys names the key of a row, e.g. ["src"].
	Keys []string
	// Rows are the top talkers, largest first; each has one value per Key.
	Rows []TopRow
	// Tracked is how many keys the window holds, Capacity how many a
	// bucket of it may hold, Window how far back it looks.
	Tracked  int
	Capacity int
	Window   time.Duration
	// LiveAccounting reports that live deltas feed the aggregation; when
	// it is false only DESTROY events do, and flows count when they end.
	LiveAccounting bool
	// Flows are the flows that moved the most bytes between the last two
	// dumps, FlowsInterval apart.
	Flows         []TopFlow
	FlowsInterval time.Duration
}

// TopRow is one talker: its key values and its bytes and packets per
// direction over the window. BytesError is the most the bytes may be off
// (0 when exact).
type TopRow struct {
	Values       []string
	OrigBytes    uint64
	OrigPackets  uint64
	ReplyBytes   uint64
	ReplyPackets uint64
	BytesError   uint64
}

// TopFlow is one flow of the live state: its original 5-tuple, whether it
// is NATed and then its reply tuple (which differs from the swapped
// original), and the bytes (both directions) it moved since the previous
// dump.
type TopFlow struct {
	Proto          string
	Src, Dst       string
	SrcPort        uint16
	DstPort        uint16
	NAT            bool
	ReplySrc       string
	ReplyDst       string
	ReplySrcPort   uint16
	ReplyDstPort   uint16
	Bytes          uint64
	BytesPerSecond float64
}

// Defaults of TopHandlerOpts.
const (
	DefaultTopMaxRows = 100
	DefaultTopTimeout = 5 * time.Second
	DefaultTopRefresh = 10 * time.Second
)

var errTopMethod = errors.New("only GET and HEAD")

// TopHandlerOpts configures a TopHandler.
type TopHandlerOpts struct {
	// MaxRows bounds the talkers and the flows shown, each; 0 means
	// DefaultTopMaxRows.
	MaxRows int
	// Timeout bounds a reading of the source; 0 means DefaultTopTimeout.
	Timeout time.Duration
	// Refresh is how often the page reloads itself; 0 means
	// DefaultTopRefresh.
	Refresh time.Duration
	// Logger gets the source's errors.
	Logger *slog.Logger
}

// TopHandler serves /top (HTML) and /top.json (the same data as JSON, with
// exact integers): the path's ending picks which. Mount it on both paths,
// behind the same authentication and TLS as /metrics.
type TopHandler struct {
	src  TopSource
	opts TopHandlerOpts
}

// NewTopHandler returns a TopHandler reading src.
func NewTopHandler(src TopSource, opts TopHandlerOpts) *TopHandler {
	if opts.MaxRows <= 0 {
		opts.MaxRows = DefaultTopMaxRows
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTopTimeout
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultTopRefresh
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &TopHandler{src: src, opts: opts}
}

// ServeHTTP serves one GET or HEAD of /top or /top.json.
func (h *TopHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, errTopMethod.Error(), http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	rd, err := h.src.Top(ctx)
	if err != nil {
		h.opts.Logger.Warn("reading the top talkers", "err", err)
		http.Error(w, "reading the top talkers: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	v := h.view(rd)
	var buf bytes.Buffer
	if strings.HasSuffix(r.URL.Path, ".json") {
		err = writeTopJSON(&buf, v)
		w.Header().Set("Content-Type", "application/json")
	} else {
		err = topPage.Execute(&buf, v)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	if err != nil {
		h.opts.Logger.Error("rendering the top talkers", "err", err)
		http.Error(w, "rendering the top talkers", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

// topView is a reading cut to MaxRows, as both renderings use it.
type topView struct {
	TopReading
	RowsOmitted  int
	FlowsOmitted int
	Refresh      int
}

func (h *TopHandler) view(rd TopReading) topView {
	v := topView{TopReading: rd, Refresh: max(1, int(h.opts.Refresh/time.Second))}
	if len(v.Rows) > h.opts.MaxRows {
		v.RowsOmitted = len(v.Rows) - h.opts.MaxRows
		v.Rows = v.Rows[:h.opts.MaxRows]
	}
	if len(v.Flows) > h.opts.MaxRows {
		v.FlowsOmitted = len(v.Flows) - h.opts.MaxRows
		v.Flows = v.Flows[:h.opts.MaxRows]
	}
	return v
}

// The schema of /top.json.
type (
	topJSON struct {
		Enabled              bool          `json:"enabled"`
		Keys                 []string      `json:"keys"`
		WindowSeconds        float64       `json:"window_seconds"`
		Tracked              int           `json:"tracked"`
		Capacity             int           `json:"capacity"`
		LiveAccounting       bool          `json:"live_accounting"`
		Rows                 []topRowJSON  `json:"rows"`
		RowsOmitted          int           `json:"rows_omitted"`
		FlowsIntervalSeconds float64       `json:"flows_interval_seconds"`
		Flows                []topFlowJSON `json:"flows"`
		FlowsOmitted         int           `json:"flows_omitted"`
	}
	topRowJSON struct {
		Key          map[string]string `json:"key"`
		OrigBytes    uint64            `json:"orig_bytes"`
		OrigPackets  uint64            `json:"orig_packets"`
		ReplyBytes   uint64            `json:"reply_bytes"`
		ReplyPackets uint64            `json:"reply_packets"`
		BytesError   uint64            `json:"bytes_error"`
	}
	topFlowJSON struct {
		Proto   string `json:"proto"`
		Src     string `json:"src"`
		SrcPort uint16 `json:"src_port"`
		Dst     string `json:"dst"`
		DstPort uint16 `json:"dst_port"`
		NAT     bool   `json:"nat"`
		// Reply is the reply tuple, only when the flow is NATed.
		Reply          *topTupleJSON `json:"reply,omitempty"`
		Bytes          uint64        `json:"bytes"`
		BytesPerSecond float64       `json:"bytes_per_second"`
	}
	topTupleJSON struct {
		Src     string `json:"src"`
		SrcPort uint16 `json:"src_port"`
		Dst     string `json:"dst"`
		DstPort uint16 `json:"dst_port"`
	}
)

func writeTopJSON(buf *bytes.Buffer, v topView) error {
	out := topJSON{
		Enabled:              v.Enabled,
		Keys:                 v.Keys,
		WindowSeconds:        v.Window.Seconds(),
		Tracked:              v.Tracked,
		Capacity:             v.Capacity,
		LiveAccounting:       v.LiveAccounting,
		Rows:                 make([]topRowJSON, 0, len(v.Rows)),
		RowsOmitted:          v.RowsOmitted,
		FlowsIntervalSeconds: v.FlowsInterval.Seconds(),
		Flows:                make([]topFlowJSON, 0, len(v.Flows)),
		FlowsOmitted:         v.FlowsOmitted,
	}
	if out.Keys == nil {
		out.Keys = []string{}
	}
	for _, r := range v.Rows {
		k := make(map[string]string, len(v.Keys))
		for i, name := range v.Keys {
			if i < len(r.Values) {
				k[name] = r.Values[i]
			}
		}
		out.Rows = append(out.Rows, topRowJSON{k, r.OrigBytes, r.OrigPackets, r.ReplyBytes, r.ReplyPackets, r.BytesError})
	}
	for _, f := range v.Flows {
		j := topFlowJSON{Proto: f.Proto, Src: f.Src, SrcPort: f.SrcPort, Dst: f.Dst, DstPort: f.DstPort, NAT: f.NAT, Bytes: f.Bytes, BytesPerSecond: f.BytesPerSecond}
		if f.NAT {
			j.Reply = &topTupleJSON{f.ReplySrc, f.ReplySrcPort, f.ReplyDst, f.ReplyDstPort}
		}
		out.Flows = append(out.Flows, j)
	}
	enc := json.NewEncoder(buf)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// humanBytes formats n in SI units: 999 B, 1.5 kB, 12 MB.
func humanBytes(n float64) string {
	const units = "kMGTPE"
	if n < 1000 {
		return strconv.FormatFloat(n, 'f', 0, 64) + " B"
	}
	u := -1
	for n >= 1000 && u < len(units)-1 {
		n /= 1000
		u++
	}
	prec := 0
	if n < 10 {
		prec = 1
	}
	return strconv.FormatFloat(n, 'f', prec, 64) + " " + units[u:u+1] + "B"
}

// humanDuration formats d to the second, without zero units: 1m, 90s
// as 1m30s, 1h.
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		return "0s"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strings.TrimSuffix(d.String(), "0s")
	}
	return d.String()
}

// rate is bytes over d, per second.
func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

var topFuncs = template.FuncMap{
	"bytes": func(n uint64) string { return humanBytes(float64(n)) },
	"rate": func(n uint64, d time.Duration) string {
		return humanBytes(rate(n, d)) + "/s"
	},
	"bps":   func(f float64) string { return humanBytes(f) + "/s" },
	"total": func(r TopRow) uint64 { return r.OrigBytes + r.ReplyBytes },
	"dur":   humanDuration,
	"hostport": func(host string, port uint16) string {
		if port == 0 {
			return host
		}
		if strings.Contains(host, ":") {
			return "[" + host + "]:" + strconv.Itoa(int(port))
		}
		return host + ":" + strconv.Itoa(int(port))
	},
	"add": func(a, b int) int { return a + b },
	"num": func(n uint64) string { return fmt.Sprint(n) },
}

var topPage = template.Must(template.New("top").Funcs(topFuncs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Top talkers · netfilter_exporter</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24;background:#fff}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
p{margin:.3rem 0;color:#444}.note{background:#fff6d6;border-left:4px solid #d9a400;padding:.4rem .7rem;color:#1b1f24}
.empty{font-size:1.1rem;padding:1rem;background:#f3f4f6;border-radius:4px;color:#1b1f24}
table{border-collapse:collapse;margin-top:.4rem;font-variant-numeric:tabular-nums}
th,td{padding:.25rem .7rem;border-bottom:1px solid #e2e4e8;text-align:right;white-space:nowrap}
th{background:#f3f4f6;font-weight:600}td.k,th.k{text-align:left;font-family:ui-monospace,monospace}
tr:hover td{background:#f8fafc}.err{color:#8a5a00}a{color:#0b5cad}
</style>
</head>
<body>
<h1>Top talkers</h1>
{{- if not .Enabled}}
<p class="empty">Top talkers are off: set --conntrack.top.count.</p>
{{- else}}
<p>By {{range $i, $k := .Keys}}{{if $i}}, {{end}}{{$k}}{{end}}, ranked by orig + reply bytes over the last {{dur .Window}};
{{.Tracked}} keys tracked (capacity {{.Capacity}} per bucket). Refreshes every {{.Refresh}}s · <a href="top.json">JSON</a></p>
{{- if not .LiveAccounting}}
<p class="note">Live accounting is off: the aggregation is fed by DESTROY events only, so a flow counts when it ends.</p>
{{- end}}
{{- if not .Rows}}
<p class="empty">No traffic in the last window ({{dur .Window}}).</p>
{{- else}}
<table>
<thead><tr><th>#</th>{{range .Keys}}<th class="k">{{.}}</th>{{end}}<th>total</th><th>rate</th><th>orig bytes</th><th>orig packets</th><th>reply bytes</th><th>reply packets</th><th>error ±</th></tr></thead>
<tbody>
{{- $w := .Window}}
{{- range $i, $r := .Rows}}
<tr><td>{{add $i 1}}</td>{{range $r.Values}}<td class="k">{{.}}</td>{{end}}<td title="{{num (total $r)}} bytes">{{bytes (total $r)}}</td><td>{{rate (total $r) $w}}</td><td title="{{$r.OrigBytes}} bytes">{{bytes $r.OrigBytes}}</td><td>{{$r.OrigPackets}}</td><td title="{{$r.ReplyBytes}} bytes">{{bytes $r.ReplyBytes}}</td><td>{{$r.ReplyPackets}}</td><td{{if $r.BytesError}} class="err"{{end}} title="{{$r.BytesError}} bytes">{{if $r.BytesError}}{{bytes $r.BytesError}}{{else}}exact{{end}}</td></tr>
{{- end}}
</tbody>
</table>
{{- if .RowsOmitted}}<p>{{.RowsOmitted}} more not shown.</p>{{end}}
{{- end}}
<h2>Flows moving the most bytes now</h2>
{{- if not .LiveAccounting}}
<p class="empty">Flows are shown only with live accounting (--conntrack.poll-interval other than 0).</p>
{{- else if not .Flows}}
<p class="empty">No flow moved bytes since the previous dump.</p>
{{- else}}
<p>Bytes moved between the last two dumps, {{dur .FlowsInterval}} apart.</p>
<table>
<thead><tr><th class="k">proto</th><th class="k">source</th><th class="k">destination</th><th class="k">NAT (reply tuple)</th><th>bytes</th><th>rate</th></tr></thead>
<tbody>
{{- range .Flows}}
<tr><td class="k">{{.Proto}}</td><td class="k">{{hostport .Src .SrcPort}}</td><td class="k">{{hostport .Dst .DstPort}}</td><td class="k">{{if .NAT}}{{hostport .ReplySrc .ReplySrcPort}} → {{hostport .ReplyDst .ReplyDstPort}}{{else}}no{{end}}</td><td title="{{.Bytes}} bytes">{{bytes .Bytes}}</td><td>{{bps .BytesPerSecond}}</td></tr>
{{- end}}
</tbody>
</table>
{{- if .FlowsOmitted}}<p>{{.FlowsOmitted}} more not shown.</p>{{end}}
{{- end}}
{{- end}}
</body>
</html>
`))
