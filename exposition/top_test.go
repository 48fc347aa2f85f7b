package exposition

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// fakeTop is a TopSource giving a fixed reading.
type fakeTop struct {
	rd  TopReading
	err error
}

func (f fakeTop) Top(ctx context.Context) (TopReading, error) { return f.rd, f.err }

func sampleTop() TopReading {
	return TopReading{
		Enabled:        true,
		Keys:           []string{"src"},
		Tracked:        3,
		Capacity:       8192,
		Window:         time.Minute,
		LiveAccounting: true,
		Rows: []TopRow{
			{Values: []string{"192.0.2.10"}, OrigBytes: 1_234_567_890, OrigPackets: 900_000, ReplyBytes: 45_000_000, ReplyPackets: 400_000},
			{Values: []string{"2001:db8:1::/64"}, OrigBytes: 9_876_543, OrigPackets: 7000, ReplyBytes: 120_000, ReplyPackets: 900, BytesError: 4096},
			{Values: []string{"198.51.100.7"}, OrigBytes: 512, OrigPackets: 4, ReplyBytes: 0, ReplyPackets: 0},
		},
		FlowsInterval: 10 * time.Second,
		Flows: []TopFlow{
			{Proto: "tcp", Src: "192.0.2.10", SrcPort: 40212, Dst: "203.0.113.5", DstPort: 443, NAT: true,
				ReplySrc: "10.0.0.5", ReplySrcPort: 8443, ReplyDst: "198.51.100.1", ReplyDstPort: 61000, Bytes: 80_000_000, BytesPerSecond: 8_000_000},
			{Proto: "udp", Src: "2001:db8:1::5", SrcPort: 5353, Dst: "2001:db8:2::1", DstPort: 53, Bytes: 1200, BytesPerSecond: 120},
		},
	}
}

func topGet(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestTopPage(t *testing.T) {
	hostile := sampleTop()
	hostile.Keys = []string{"iif"}
	hostile.Rows = []TopRow{{Values: []string{`<script>alert("x")</script>&"'`}, OrigBytes: 1}}
	hostile.Flows = []TopFlow{{Proto: "<b>tcp</b>", Src: "<img src=x>", Dst: "a\"b", Bytes: 1}}
	nolive := sampleTop()
	nolive.LiveAccounting, nolive.Flows = false, nil
	empty := sampleTop()
	empty.Rows, empty.Flows = nil, nil
	for _, tc := range []struct {
		name    string
		rd      TopReading
		want    []string
		notWant []string
	}{
		{"off", TopReading{}, []string{"Top talkers are off: set --conntrack.top.count."}, []string{"<table>"}},
		{"talkers", sampleTop(), []string{
			`<meta http-equiv="refresh" content="10">`,
			`<td class="k">192.0.2.10</td><td title="1279567890 bytes">1.3 GB</td><td>21 MB/s</td>`,
			`<td class="k">2001:db8:1::/64</td>`, `title="4096 bytes">4.1 kB</td>`, ">exact</td>",
			"over the last 1m;", "3 keys tracked (capacity 8192 per bucket)",
			"192.0.2.10:40212", "[2001:db8:2::1]:53", "8.0 MB/s", "10s apart",
			`<td class="k">10.0.0.5:8443 → 198.51.100.1:61000</td>`, `<td class="k">no</td>`,
		}, []string{"DESTROY events only", "<script", "only with live accounting"}},
		{"DESTROY only", nolive, []string{"the aggregation is fed by DESTROY events only", "Flows are shown only with live accounting"},
			[]string{"No flow moved bytes"}},
		{"empty", empty, []string{"No traffic in the last window (1m).", "No flow moved bytes since the previous dump."}, []string{"<table>"}},
		{"hostile", hostile, []string{
			"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#34;&#39;", "&lt;img src=x&gt;", "&lt;b&gt;tcp&lt;/b&gt;",
		}, []string{"<script>", "<img", "<b>tcp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := topGet(t, NewTopHandler(fakeTop{rd: tc.rd}, TopHandlerOpts{}), http.MethodGet, "/top")
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			body := rec.Body.String()
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page has %q:\n%s", w, body)
				}
			}
		})
	}
}

func TestTopMethodsAndErrors(t *testing.T) {
	h := NewTopHandler(fakeTop{rd: sampleTop()}, TopHandlerOpts{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		rec := topGet(t, h, m, "/top")
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
	for _, path := range []string{"/top", "/top.json"} {
		g, hd := topGet(t, h, http.MethodGet, path), topGet(t, h, http.MethodHead, path)
		if hd.Code != http.StatusOK || hd.Body.Len() != 0 || hd.Header().Get("Content-Length") != g.Header().Get("Content-Length") ||
			hd.Header().Get("Content-Type") != g.Header().Get("Content-Type") {
			t.Errorf("HEAD %s: status %d, %d bytes, headers %v; GET headers %v", path, hd.Code, hd.Body.Len(), hd.Header(), g.Header())
		}
	}
	rec := topGet(t, NewTopHandler(fakeTop{err: errors.New("pipeline stopped")}, TopHandlerOpts{}), http.MethodGet, "/top")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "pipeline stopped") {
		t.Errorf("source error: status %d %q", rec.Code, rec.Body)
	}
	// The deadline reaches the source.
	var deadline time.Duration
	src := topFunc(func(ctx context.Context) (TopReading, error) {
		d, _ := ctx.Deadline()
		deadline = time.Until(d)
		return TopReading{}, nil
	})
	topGet(t, NewTopHandler(src, TopHandlerOpts{Timeout: time.Second}), http.MethodGet, "/top")
	if deadline <= 0 || deadline > time.Second {
		t.Errorf("source's deadline %v away, want within 1s", deadline)
	}
}

// topFunc is a TopSource made of a function.
type topFunc func(ctx context.Context) (TopReading, error)

func (f topFunc) Top(ctx context.Context) (TopReading, error) { return f(ctx) }

func TestTopJSON(t *testing.T) {
	rd := sampleTop()
	rd.Rows[0].OrigBytes = 1<<63 + 1 // exact past float64's 53 bits
	h := NewTopHandler(fakeTop{rd: rd}, TopHandlerOpts{MaxRows: 2})
	rec := topGet(t, h, http.MethodGet, "/top.json")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !strings.Contains(rec.Body.String(), `"orig_bytes": 9223372036854775809`) {
		t.Errorf("orig_bytes not exact:\n%s", rec.Body)
	}
	var got map[string]any
	dec := json.NewDecoder(rec.Body)
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"enabled": true, "keys": []any{"src"}, "window_seconds": json.Number("60"), "tracked": json.Number("3"),
		"capacity": json.Number("8192"), "live_accounting": true, "rows_omitted": json.Number("1"),
		"flows_interval_seconds": json.Number("10"), "flows_omitted": json.Number("0"),
		"rows": []any{
			map[string]any{"key": map[string]any{"src": "192.0.2.10"}, "orig_bytes": json.Number("9223372036854775809"), "orig_packets": json.Number("900000"),
				"reply_bytes": json.Number("45000000"), "reply_packets": json.Number("400000"), "bytes_error": json.Number("0")},
			map[string]any{"key": map[string]any{"src": "2001:db8:1::/64"}, "orig_bytes": json.Number("9876543"), "orig_packets": json.Number("7000"),
				"reply_bytes": json.Number("120000"), "reply_packets": json.Number("900"), "bytes_error": json.Number("4096")},
		},
		"flows": []any{
			map[string]any{"proto": "tcp", "src": "192.0.2.10", "src_port": json.Number("40212"), "dst": "203.0.113.5", "dst_port": json.Number("443"),
				"nat": true, "reply": map[string]any{"src": "10.0.0.5", "src_port": json.Number("8443"), "dst": "198.51.100.1", "dst_port": json.Number("61000")},
				"bytes": json.Number("80000000"), "bytes_per_second": json.Number("8000000")},
			map[string]any{"proto": "udp", "src": "2001:db8:1::5", "src_port": json.Number("5353"), "dst": "2001:db8:2::1", "dst_port": json.Number("53"),
				"nat": false, "bytes": json.Number("1200"), "bytes_per_second": json.Number("120")},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JSON\n%#v\nwant\n%#v", got, want)
	}
	// Off: the same schema, empty lists rather than null.
	rec = topGet(t, NewTopHandler(fakeTop{}, TopHandlerOpts{}), http.MethodGet, "/top.json")
	for _, w := range []string{`"enabled": false`, `"rows": []`, `"flows": []`, `"keys": []`} {
		if !strings.Contains(rec.Body.String(), w) {
			t.Errorf("off: JSON lacks %s:\n%s", w, rec.Body)
		}
	}
}

func TestHumanFormats(t *testing.T) {
	for n, want := range map[float64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1536: "1.5 kB", 12_345_678: "12 MB", 1e18: "1.0 EB", 1e21: "1000 EB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%v) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Minute: "1m", 10 * time.Second: "10s", 90 * time.Second: "1m30s", time.Hour: "1h", 0: "0s", 5 * time.Minute: "5m"} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestTopChromium renders /top in headless Chromium: the talkers' addresses
// must be in the page's rendered text, and a screenshot is written to
// $TOP_SCREENSHOT (or the test's directory) to look at.
func TestTopChromium(t *testing.T) {
	netnstest.RequireTools(t, "chromium")
	if testing.Short() {
		t.Skip("-short: starts a browser")
	}
	srv := httptest.NewServer(NewTopHandler(fakeTop{rd: sampleTop()}, TopHandlerOpts{}))
	defer srv.Close()
	url := srv.URL + "/top"
	dir := t.TempDir()
	shot := os.Getenv("TOP_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(dir, "top.png")
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1200,800"}
		cmd := exec.CommandContext(ctx, "chromium", append(append(base, args...), url)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	dom := run("--dump-dom")
	for _, w := range []string{"192.0.2.10", "2001:db8:1::/64", "198.51.100.7", "[2001:db8:2::1]:53", "10.0.0.5:8443", "Top talkers"} {
		if !strings.Contains(dom, w) {
			t.Errorf("rendered page lacks %q:\n%s", w, dom)
		}
	}
	run("--screenshot=" + shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 8)
	if _, err := io.ReadFull(f, head); err != nil || string(head) != "\x89PNG\r\n\x1a\n" {
		t.Fatalf("screenshot %s is not a PNG: %v %q", shot, err, head)
	}
	t.Logf("screenshot: %s", shot)
}
