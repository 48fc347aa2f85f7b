package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestExporterNflog runs the exporter with --nflog.group on a namespace
// whose nft log and iptables NFLOG rules see real traffic: /metrics, summed
// by group and prefix, must hold exactly what the rules counted, with the
// interface names and no loss; Graphite gets the documented paths; and a
// second exporter asking for a group the first holds fails that collector,
// naming the holder.
func TestExporterNflog(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "ip6tables", "promtool")
	f := netnstest.NewNflogFixture(t)
	c := newCarbon(t)
	e := startExporter(t, "--netns="+f.B.Path(), "--collector.disable-defaults",
		"--nflog.group=5", "--nflog.group=6", "--nflog.group=7", "--nflog.group-by=family,proto,dport,in",
		"--graphite.address="+c.l.Addr().String(), "--graphite.interval=300ms")
	f.Send(t, 10)

	var rules []netnstest.NflogRule
	deadline := time.Now().Add(30 * time.Second)
	for {
		rules = f.Rules(t)
		body, mfs := e.scrape(t)
		diff := ""
		for _, r := range rules {
			labels := map[string]string{"group": fmt.Sprint(r.Group), "prefix": strings.TrimSpace(r.Prefix)}
			p, _ := sum(mfs, "netfilter_nflog_packets_total", labels)
			b, _ := sum(mfs, "netfilter_nflog_bytes_total", labels)
			if p != float64(r.Packets) || b != float64(r.Bytes) {
				diff += fmt.Sprintf("\n%v: /metrics has %v packets %v bytes", r, p, b)
			}
		}
		if diff == "" {
			promtoolCheck(t, body)
			if lost, n := sum(mfs, "netfilter_nflog_packets_lost_total", nil); lost != 0 || n != 3 {
				t.Errorf("lost %v over %d groups, want 0 over 3", lost, n)
			}
			if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "nflog"}); v != 1 {
				t.Errorf("collector success = %v", v)
			}
			// The interface is named as in the watched namespace.
			if v := mustValue(t, mfs, "netfilter_nflog_packets_total", map[string]string{"group": "7", "family": "ipv4", "proto": "udp", "dport": "9002", "in": f.IfB}); v != 10 {
				t.Errorf("group 7 ipv4 udp 9002 in %s: %v packets, want 10", f.IfB, v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics differs from the rules' counters:%s", diff)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Graphite: nflog.<group>.<prefix>.<keys>.pkts, escaped.
	want := "netfilter.nflog.7.Input_IPv4_Default_DROP.ipv4.udp.9002." + f.IfB + ".pkts"
	c.waitFor(t, 20*time.Second, func(path string, v float64, _ int64) bool { return path == want && v == 10 })
	c.waitFor(t, 20*time.Second, func(path string, v float64, _ int64) bool {
		return path == "netfilter.exporter.nflog.lost.5" && v == 0
	})

	// A second exporter cannot bind group 5, and says who holds it.
	e2 := startExporter(t, "--netns="+f.B.Path(), "--collector.disable-defaults", "--nflog.group=5")
	_, mfs := e2.scrape(t)
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "nflog"}); v != 0 {
		t.Errorf("second exporter: collector success = %v, want 0", v)
	}
	resp, err := http.Get(e2.url + "/-/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("second exporter /-/ready: %s, want 503", resp.Status)
	}
	log := e2.stderr.String()
	for _, w := range []string{"nflog group 5", "bound by another socket", fmt.Sprintf("process %d ", e.cmd.Process.Pid)} {
		if !strings.Contains(log, w) {
			t.Errorf("second exporter's log does not say %q:\n%s", w, log)
		}
	}
}
