package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestExporterStalledClientsDoNotLockOut runs the exporter with 10,000 flow
// series (a body of about 6 MB uncompressed), fills its request slots, and
// more, with clients that ask for /metrics with a 4 KiB receive buffer and
// never read, then scrapes it normally: every normal scrape must succeed,
// the cut-offs must show in its metrics, and the exporter must still stop
// cleanly on SIGTERM with the stalled clients connected (startExporter
// checks that it exits 0 within 10s).
func TestExporterStalledClientsDoNotLockOut(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t)
	e := startExporter(t, "--netns="+ns.Path(), "--no-collector.nfacct", "--web.max-requests=4",
		"--conntrack.group-by=family,proto,src,sport,dport", "--conntrack.max-series=10010")
	const n = 10000
	if err := ctload.Create(ns.FD(), n); err != nil {
		t.Fatal(err)
	}
	if err := ctload.Flush(ns.FD()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if v, ok := value(e.mustScrape(t), "netfilter_conntrack_series", nil); ok && v >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter does not hold %d series after a minute", n)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for range 6 {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); err != nil {
				return err
			}
			return serr
		}}
		c, err := d.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)

	client := &http.Client{Timeout: 20 * time.Second}
	for i := range 3 {
		resp, err := client.Get(e.url + "/metrics")
		if err != nil {
			t.Fatalf("normal scrape %d beside 6 stalled clients: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("normal scrape %d beside 6 stalled clients: %s %v", i, resp.Status, err)
		}
		if !strings.Contains(string(body), "\nnetfilter_conntrack_series 10000\n") {
			t.Fatalf("normal scrape %d: incomplete body of %d bytes", i, len(body))
		}
	}
	_, mfs := e.scrape(t)
	if v := mustValue(t, mfs, "netfilter_exporter_http_clients_cut_off_total", map[string]string{"reason": "stalled"}); v < 1 {
		t.Errorf("netfilter_exporter_http_clients_cut_off_total{reason=\"stalled\"} = %v, want at least 1", v)
	}
}
