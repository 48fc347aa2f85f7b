package exposition

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"sync/atomic"
	"syscall"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

var seqDesc = tree.NewDesc("netfilter_test_snapshot", "Which snapshot this is.", tree.Gauge)
var fillDesc = tree.NewDesc("netfilter_test_fill_bytes_total", "Filler series.", tree.Counter, "id")

// countingSource counts its snapshots; each holds its number and n filler
// samples. When gate is not nil, a snapshot waits for it to be closed.
type countingSource struct {
	calls atomic.Int64
	gate  chan struct{}
	fill  []string
}

func newCountingSource(n int) *countingSource {
	return newPaddedSource(n, 0)
}

// newPaddedSource makes each filler id pad bytes longer: big bodies of few
// samples.
func newPaddedSource(n, pad int) *countingSource {
	s := &countingSource{fill: make([]string, n)}
	for i := range s.fill {
		s.fill[i] = fmt.Sprintf("filler-series-%08d", i) + strings.Repeat("x", pad)
	}
	return s
}

func (s *countingSource) Snapshot(context.Context) *tree.Snapshot {
	n := s.calls.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	var b tree.Builder
	b.Add(seqDesc, float64(n), nil)
	for i, id := range s.fill {
		b.Add(fillDesc, float64(i)*1e6, nil, id)
	}
	snap := &tree.Snapshot{}
	snap.Append(&b)
	return snap
}

// serve runs h on a loopback listener until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// get scrapes url with the given Accept header, without Go's transparent
// gzip, and returns the response and its raw body.
func get(t *testing.T, url, accept, encoding string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Header.Set("Accept-Encoding", encoding)
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func gunzip(t *testing.T, p []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Accept headers of real scrapers.
const (
	prometheus2Accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
	prometheus3Accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.2,*/*;q=0.1"
)

func TestNegotiation(t *testing.T) {
	reg := prom.NewRegistry()
	reg.MustRegister(prom.NewGaugeFunc(prom.GaugeOpts{Name: "netfilter_exporter_build_info", Help: "Build."}, func() float64 { return 1 }))
	url := serve(t, NewHandler(newCountingSource(3), HandlerOpts{Gatherer: reg}))
	for _, tt := range []struct {
		name, accept, contentType string
		om                        bool
	}{
		{"none", "", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", false},
		{"curl", "*/*", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", false},
		{"text", "text/plain;version=0.0.4", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", false},
		{"prometheus 2", prometheus2Accept, "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores", true},
		{"prometheus 3, protobuf first", prometheus3Accept, "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8", true},
		{"openmetrics 0.0.1", "application/openmetrics-text;version=0.0.1", "application/openmetrics-text; version=0.0.1; charset=utf-8; escaping=underscores", true},
		{"unknown version", "text/plain;version=9.9,application/openmetrics-text;version=1.0.0;q=0.1", "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, enc := range []string{"", "gzip", "gzip;q=0"} {
				resp, body := get(t, url, tt.accept, enc)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %s", enc, resp.Status)
				}
				if got := resp.Header.Get("Content-Type"); got != tt.contentType {
					t.Errorf("Accept-Encoding %q: Content-Type %q, want %q", enc, got, tt.contentType)
				}
				if gz := resp.Header.Get("Content-Encoding") == "gzip"; gz != (enc == "gzip") {
					t.Errorf("Accept-Encoding %q: Content-Encoding %q", enc, resp.Header.Get("Content-Encoding"))
				} else if gz {
					body = gunzip(t, body)
				}
				if resp.ContentLength < 0 || (enc != "gzip" && resp.ContentLength != int64(len(body))) {
					t.Errorf("Accept-Encoding %q: Content-Length %d for %d bytes", enc, resp.ContentLength, len(body))
				}
				text := string(body)
				if !strings.HasPrefix(text, "# HELP netfilter_exporter_build_info") {
					t.Errorf("the registry's families do not come first:\n%s", text)
				}
				if tt.om {
					if !strings.HasSuffix(text, "\n# EOF\n") || !strings.Contains(text, "# TYPE netfilter_test_fill_bytes counter\n") ||
						!strings.Contains(text, `netfilter_test_fill_bytes_total{id="filler-series-00000001"} 1e+06`) {
						t.Errorf("not OpenMetrics:\n%s", text)
					}
				} else {
					mfs, err := parseText(body)
					if err != nil {
						t.Fatalf("text does not parse: %v\n%s", err, text)
					}
					if len(mfs) != 3 || strings.Contains(text, "# EOF") {
						t.Errorf("want 3 families and no # EOF:\n%s", text)
					}
				}
			}
		})
	}
}

// TestConcurrentScrapesShareOneSnapshot starts scrapes while a snapshot is
// under way: they all get the bytes of that one snapshot, in each format
// they asked for. A scrape after it has finished gets a fresh snapshot.
func TestConcurrentScrapesShareOneSnapshot(t *testing.T) {
	src := newCountingSource(1000)
	src.gate = make(chan struct{})
	h := NewHandler(src, HandlerOpts{MaxRequests: 40})
	url := serve(t, h)

	const n = 8
	type result struct {
		body []byte
		om   bool
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			accept, enc := "", ""
			if i%2 == 1 {
				accept = prometheus2Accept
			}
			if i%4 < 2 {
				enc = "gzip"
			}
			resp, body := get(t, url, accept, enc)
			if resp.Header.Get("Content-Encoding") == "gzip" {
				body = gunzip(t, body)
			}
			results <- result{body: body, om: accept != ""}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.waiting.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d scrapes waiting for the snapshot", h.waiting.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(src.gate)
	bodies := map[bool][]byte{}
	for range n {
		r := <-results
		if prev, ok := bodies[r.om]; ok && !bytes.Equal(prev, r.body) {
			t.Errorf("two scrapes of the same snapshot (OpenMetrics %v) got different bodies", r.om)
		}
		bodies[r.om] = r.body
	}
	if got := src.calls.Load(); got != 1 {
		t.Errorf("%d concurrent scrapes took %d snapshots, want 1", n, got)
	}
	for om, b := range bodies {
		want := "netfilter_test_snapshot 1\n"
		if om {
			want = "netfilter_test_snapshot 1.0\n"
		}
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("OpenMetrics %v: body is not of snapshot 1", om)
		}
	}
	_, body := get(t, url, "", "")
	if !bytes.Contains(body, []byte("netfilter_test_snapshot 2\n")) || src.calls.Load() != 2 {
		t.Errorf("a scrape after the shared one did not get a fresh snapshot (%d taken)", src.calls.Load())
	}
}

// stall opens a connection with a 4 KiB receive buffer, asks for /metrics
// uncompressed and never reads. It is closed when the test ends.
func stall(t *testing.T, url string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStalledClientsDoNotLockOut fills every request slot, and more, with
// clients that never read a body of several megabytes, then scrapes
// normally: every normal scrape gets its whole body, because a client that
// has stopped reading is cut off when its slot is needed, long before the
// write timeout.
func TestStalledClientsDoNotLockOut(t *testing.T) {
	const slots, stalled = 4, 6
	reg := prom.NewRegistry()
	// 20,000 samples of 350 bytes: a body of 7 MB, more than the socket
	// buffers hold, quick to render even under the race detector.
	h := NewHandler(newPaddedSource(20000, 300), HandlerOpts{MaxRequests: slots, WriteTimeout: time.Minute, Registerer: reg})
	// A loaded test machine may take seconds to render; the bound on the
	// wait for a slot is not what is tested here.
	h.slotWait = 20 * time.Second
	url := serve(t, h)
	for range stalled {
		stall(t, url)
	}
	// Let the stalled clients take the slots and block.
	time.Sleep(stallAfter + 500*time.Millisecond)
	for i := range 3 {
		resp, body := get(t, url, "", "gzip")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("normal scrape %d beside %d stalled clients: %s", i, stalled, resp.Status)
		}
		if text := gunzip(t, body); !bytes.Contains(text, []byte("filler-series-00019999"+strings.Repeat("x", 300)+"\"} 1.9999e+10\n")) || !bytes.Contains(text, []byte("\n# TYPE netfilter_test_snapshot gauge\nnetfilter_test_snapshot ")) {
			t.Fatalf("normal scrape %d: body incomplete (%d bytes)", i, len(text))
		}
	}
	if got := testutil.ToFloat64(h.cutOff.WithLabelValues("stalled")); got < 1 {
		t.Errorf("no stalled client was cut off (%v)", got)
	}
}

// TestWriteTimeoutCutsOffClient checks that a client that reads nothing is
// cut off after the write timeout and frees its slot by itself.
func TestWriteTimeoutCutsOffClient(t *testing.T) {
	h := NewHandler(newCountingSource(100000), HandlerOpts{MaxRequests: 1, WriteTimeout: 300 * time.Millisecond})
	url := serve(t, h)
	stall(t, url)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(h.cutOff.WithLabelValues("write_timeout")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled client was not cut off within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, _ := get(t, url, "", "gzip"); resp.StatusCode != http.StatusOK {
		t.Errorf("scrape after the cut-off: %s", resp.Status)
	}
	if got := testutil.ToFloat64(h.cutOff.WithLabelValues("stalled")); got != 0 {
		t.Errorf("%v clients cut off to make room, want none: the slot was free", got)
	}
}

// TestSlowReaderGetsWholeBody reads a body of several write timeouts' worth
// slowly but steadily: the deadline follows each chunk, so it gets it all.
func TestSlowReaderGetsWholeBody(t *testing.T) {
	const timeout = 200 * time.Millisecond
	h := NewHandler(newCountingSource(30000), HandlerOpts{MaxRequests: 1, WriteTimeout: timeout})
	url := serve(t, h)
	c := stall(t, url)
	start := time.Now()
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	buf := make([]byte, 8192)
	for {
		n, err := resp.Body.Read(buf)
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, resp.ContentLength, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got != resp.ContentLength {
		t.Errorf("read %d bytes of %d", got, resp.ContentLength)
	}
	if d := time.Since(start); d < 3*timeout {
		t.Logf("the body took %v only; the test did not exercise several deadlines", d)
	}
	if n := testutil.ToFloat64(h.cutOff.WithLabelValues("write_timeout")); n != 0 {
		t.Errorf("a steady reader was cut off")
	}
}

// TestScrapeTimeoutBoundsARequest reads a large body too slowly to finish
// within the scrape timeout, though fast enough for the write timeout: the
// response is cut off at the scrape timeout.
func TestScrapeTimeoutBoundsARequest(t *testing.T) {
	h := NewHandler(newPaddedSource(20000, 300), HandlerOpts{WriteTimeout: time.Minute, ScrapeTimeout: 700 * time.Millisecond})
	url := serve(t, h)
	// Taken before the request is sent, so that the server's clock cannot
	// start before the test's.
	start := time.Now()
	c := stall(t, url)
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	buf := make([]byte, 4096)
	cut := func() bool { return testutil.ToFloat64(h.cutOff.WithLabelValues("scrape_timeout")) == 1 }
	for !cut() && time.Since(start) < 10*time.Second {
		n, err := resp.Body.Read(buf)
		got += int64(n)
		if err != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !cut() {
		t.Fatalf("not cut off at the scrape timeout after %v (write_timeout cut-offs: %v)", time.Since(start), testutil.ToFloat64(h.cutOff.WithLabelValues("write_timeout")))
	}
	if got >= resp.ContentLength {
		t.Errorf("read the whole body (%d bytes) before the cut-off", got)
	}
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Errorf("cut off after %v, before the 700ms scrape timeout", d)
	}
}
