package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// The configuration files of TestExporterReload: the one the exporter
// starts with, the one it reloads (lab renamed office, port 9100 listed,
// port 9200 denied), and one that is wrong.
const (
	reloadStartFile = "networks:\n  lab: [192.0.2.0/24]\n  dmz: [198.51.100.0/24]\nports: [9000]\n"
	reloadGoodFile  = "networks:\n  office: [192.0.2.0/24]\n  dmz: [198.51.100.0/24]\nports: [9000, 9100]\nfilters:\n  deny:\n    - {dport: [9200]}\n"
	reloadBadFile   = "networks:\n  office: [192.0.2.0/33]\n  dmz: [198.51.100.0/24]\nports: [9000, 9100]\n"
)

// Reload metric families, as Prometheus names its own.
const (
	reloadOK = "netfilter_exporter_config_last_reload_successful"
	reloadAt = "netfilter_exporter_config_last_reload_success_timestamp_seconds"
)

// postReload sends POST /-/reload to e and returns the status and body.
func postReload(t *testing.T, e *exporter, method string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+"/-/reload", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestExporterReload changes the configuration file of an exporter that
// counts real traffic with live accounting, and makes it reload, by SIGHUP
// and by POST /-/reload: the series whose keys are unchanged continue their
// sums, the renamed network's flows count under its new name from where
// the dumps left them (not from zero, not twice), the newly listed port gets
// a series, the new filter refuses its flows; a wrong file is refused, the
// old configuration keeps counting and the reload metric reads 0; the
// process is the same throughout and stops on SIGTERM as ever.
func TestExporterReload(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	for _, how := range []string{"SIGHUP", "POST /-/reload"} {
		t.Run(how, func(t *testing.T) {
			testReload(t, how == "SIGHUP")
		})
	}
}

func testReload(t *testing.T, byHUP bool) {
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	_, dmz := netnstest.Link(t, a, b, "198.51.100.1/24", "198.51.100.2/24")
	// Each phase sends to an address of its own: the UDP servers of a phase
	// hold their ports until the test ends.
	for _, addr := range []string{"198.51.100.3/24", "198.51.100.4/24"} {
		b.Run(t, "ip", "addr", "add", addr, "dev", dmz)
	}
	netnstest.TrackConnections(t, b)
	log := netnstest.WatchDestroys(t, b)
	file := filepath.Join(t.TempDir(), "netfilter_exporter.yml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadStartFile)
	args := []string{"--netns=" + b.Path(), "--no-collector.nfacct", "--conntrack.poll-interval=100ms",
		"--conntrack.group-by=dst_net,dport", "--config.file=" + file}
	if !byHUP {
		args = append(args, "--web.enable-lifecycle")
	}
	e := startExporter(t, args...)
	keys := []string{"dst_net", "dport"}
	orig := map[string]string{"direction": "orig"}
	bytesOf := func(mfs map[string]*dto.MetricFamily) map[string]float64 {
		return seriesOf(mfs, "netfilter_conntrack_flow_bytes_total", keys, orig)
	}
	flowsOf := func(mfs map[string]*dto.MetricFamily) map[string]float64 {
		return seriesOf(mfs, "netfilter_conntrack_flows_total", keys, nil)
	}
	// udp ends one UDP flow to each port of host, an address of dmz.
	udp := func(host string, ports ...string) {
		t.Helper()
		for _, p := range ports {
			netnstest.UDPExchange(t, a, b, "udp4", host+":"+p, 2, 100)
		}
		b.Run(t, "conntrack", "-D", "-p", "udp")
	}
	// reload makes e reload and returns what POST answered (0 and "" for
	// SIGHUP), once the reload was applied or refused.
	reload := func(wantOK bool) (int, string) {
		t.Helper()
		_, mfs := e.scrape(t)
		at := mustValue(t, mfs, reloadAt, nil)
		if !byHUP {
			return postReload(t, e, http.MethodPost)
		}
		if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, e, 10*time.Second, "the SIGHUP reload done", func(mfs map[string]*dto.MetricFamily) bool {
			if wantOK {
				return mustValue(t, mfs, reloadAt, nil) > at
			}
			return mustValue(t, mfs, reloadOK, nil) == 0
		})
		return 0, ""
	}

	if byHUP {
		// Without --web.enable-lifecycle, /-/reload is refused.
		if code, body := postReload(t, e, http.MethodPost); code != http.StatusForbidden || body != "Lifecycle API is not enabled.\n" {
			t.Errorf("POST /-/reload without --web.enable-lifecycle: %d %q, want 403 Lifecycle API is not enabled.", code, body)
		}
	}
	if code, _ := postReload(t, e, http.MethodGet); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload: %d, want 405", code)
	}

	// Before: a long TCP flow to lab, live-counted; UDP flows to dmz.
	sink(t, b.Listen(t, "tcp4", "192.0.2.2:9000"))
	c := a.Dial(t, "tcp4", "192.0.2.2:9000")
	read := drain(c)
	if _, err := c.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	udp("198.51.100.2", "9000", "9100", "9200")
	var last float64
	before := waitUntil(t, e, 10*time.Second, "the TCP flow's bytes counted by the dumps and still, the 3 UDP flows ended", func(mfs map[string]*dto.MetricFamily) bool {
		bs, fs := bytesOf(mfs), flowsOf(mfs)
		still := bs["lab,9000"] >= 100<<10 && bs["lab,9000"] == last
		last = bs["lab,9000"]
		if !still {
			time.Sleep(300 * time.Millisecond)
		}
		return still && fs["dmz,9000"] == 1 && fs["dmz,other"] == 2
	})
	bytesBefore := bytesOf(before)
	startedAt := mustValue(t, before, "process_start_time_seconds", nil)
	if ok := mustValue(t, before, reloadOK, nil); ok != 1 {
		t.Errorf("%s at start = %v, want 1", reloadOK, ok)
	}

	// A good file: lab renamed office, 9100 listed, 9200 denied.
	write(reloadGoodFile)
	if code, body := reload(true); !byHUP && (code != http.StatusOK || body != "") {
		t.Errorf("POST /-/reload of a good file: %d %q, want 200 and no body", code, body)
	}
	if _, err := c.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	closeAndSettle(t, c, read)
	b.Run(t, "conntrack", "-D", "-p", "tcp")
	udp("198.51.100.3", "9000", "9100", "9200")
	after := waitUntil(t, e, 10*time.Second, "the TCP flow ended under office, 2 more UDP flows counted", func(mfs map[string]*dto.MetricFamily) bool {
		fs := flowsOf(mfs)
		return fs["office,9000"] == 1 && fs["dmz,9000"] == 2 && fs["dmz,9100"] == 1
	})
	bytesAfter, flowsAfter := bytesOf(after), flowsOf(after)
	var tcpTotal float64
	for _, en := range log.Entries() {
		if en.Proto == "tcp" && en.Orig[3] == "9000" {
			tcpTotal = float64(en.OrigBytes)
		}
	}
	if _, ok := bytesAfter["lab,9000"]; ok {
		t.Errorf("the series of the renamed network lab is still served: %v", bytesAfter)
	}
	if got := bytesBefore["lab,9000"] + bytesAfter["office,9000"]; got != tcpTotal || bytesAfter["office,9000"] >= tcpTotal {
		t.Errorf("TCP flow: %v bytes under lab before the reload and %v under office after, want them to add up to the %v the kernel counted, office counting only what moved since the reload",
			bytesBefore["lab,9000"], bytesAfter["office,9000"], tcpTotal)
	}
	if got, was := bytesAfter["dmz,9000"], bytesBefore["dmz,9000"]; got <= was {
		t.Errorf("dmz,9000 (keys unchanged) went from %v to %v bytes: want its sum continued and grown", was, got)
	}
	if got, was := bytesAfter["dmz,other"], bytesBefore["dmz,other"]; got != was || flowsAfter["dmz,other"] != 2 {
		t.Errorf("dmz,other went from %v to %v bytes (%v flows): want it kept as it was, its ports now listed or denied", was, got, flowsAfter["dmz,other"])
	}
	if got := mustValue(t, after, "netfilter_conntrack_filter_info", map[string]string{"place": "kernel"}); got != 1 {
		t.Errorf("netfilter_conntrack_filter_info{place=\"kernel\"} = %v after the reload added a filter, want 1", got)
	}
	if ok := mustValue(t, after, reloadOK, nil); ok != 1 {
		t.Errorf("%s after a good reload = %v, want 1", reloadOK, ok)
	}
	goodAt := mustValue(t, after, reloadAt, nil)

	// A wrong file: refused, the running configuration keeps counting.
	write(reloadBadFile)
	code, body := reload(false)
	wantErr := file + `: networks.office[0]: "192.0.2.0/33" is not a CIDR`
	if !byHUP && (code != http.StatusInternalServerError || !strings.Contains(body, wantErr)) {
		t.Errorf("POST /-/reload of a wrong file: %d %q, want 500 saying %q", code, body, wantErr)
	}
	// The log comes through a pipe: it may follow the answer.
	eventually(t, 5*time.Second, func() string {
		if log := e.stderr.String(); !strings.Contains(log, "file="+file) || !strings.Contains(log, strings.ReplaceAll(wantErr, `"`, `\"`)) {
			return fmt.Sprintf("the log does not name the file and say %q:\n%s", wantErr, log)
		}
		return ""
	})
	udp("198.51.100.4", "9100", "9200")
	refused := waitUntil(t, e, 10*time.Second, "one more flow to 9100 counted", func(mfs map[string]*dto.MetricFamily) bool {
		return flowsOf(mfs)["dmz,9100"] == 2
	})
	if ok, at := mustValue(t, refused, reloadOK, nil), mustValue(t, refused, reloadAt, nil); ok != 0 || at != goodAt {
		t.Errorf("after a wrong file: %s %v, %s %v; want 0 and the good reload's %v", reloadOK, ok, reloadAt, at, goodAt)
	}
	if f := flowsOf(refused); f["dmz,other"] != 2 {
		t.Errorf("dmz,other counts %v flows after a refused reload, want 2: the running filter still denies 9200", f["dmz,other"])
	}

	// The same process throughout, which stops on SIGTERM as ever.
	if got := mustValue(t, refused, "process_start_time_seconds", nil); got != startedAt {
		t.Errorf("process_start_time_seconds went from %v to %v: the exporter restarted", startedAt, got)
	}
	if n := strings.Count(e.stderr.String(), "msg=\"starting netfilter_exporter\""); n != 1 {
		t.Errorf("the log says %d times that the exporter starts, want once:\n%s", n, e.stderr)
	}
	select {
	case <-e.done:
		t.Fatalf("the exporter exited; log:\n%s", e.stderr)
	default:
	}
	if err := e.terminate(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the exporter did not stop within 10s of SIGTERM")
	}
	if !strings.Contains(e.stderr.String(), "msg=stopped") {
		t.Errorf("no \"stopped\" line at SIGTERM after the reloads:\n%s", e.stderr)
	}
}
