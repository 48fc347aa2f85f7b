package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	want := "netfilter.nflog.7.Input%20IPv4%20Default%20DROP.ipv4.udp.9002." + f.IfB + ".pkts"
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

// TestExporterNflogConntrackInvalid runs the exporter with
// --nflog.conntrack-invalid on a namespace that receives SYN+FIN segments
// from a peer: they and the namespace's RST replies are counted by reason
// and direction, equal to ct state invalid counters at prerouting and
// output, and the sysctls the exporter set read as before once it exits.
func TestExporterNflogConntrackInvalid(t *testing.T) {
	netnstest.Require(t, "nft")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.NftLoad(t, b, `
table inet track {
	counter inv_in { }
	counter inv_out { }
	chain pre {
		type filter hook prerouting priority 0;
		ct state invalid counter name "inv_in"
	}
	chain out {
		type filter hook output priority 0;
		ct state invalid counter name "inv_out"
	}
}
`)
	sysctls := []string{"net.netfilter.nf_log.2", "net.netfilter.nf_log.10", "net.netfilter.nf_conntrack_log_invalid"}
	read := func() string { return b.Run(t, "sysctl", append([]string{"-n"}, sysctls...)...) }
	before := read()
	e := startExporter(t, "--netns="+b.Path(), "--collector.disable-defaults", "--nflog.conntrack-invalid")
	// The exporter serves /metrics once the sysctls are set.
	netnstest.SendTCPFlags(t, a, "192.0.2.1", "192.0.2.2", 80, 0x03, 5)
	deadline := time.Now().Add(30 * time.Second)
	for {
		counters := map[string]float64{}
		for _, c := range netnstest.NftCounters(t, b) {
			counters[c.Name] = float64(c.Packets)
		}
		_, mfs := e.scrape(t)
		in, _ := sum(mfs, "netfilter_conntrack_invalid_packets_total", map[string]string{"direction": "in"})
		out, _ := sum(mfs, "netfilter_conntrack_invalid_packets_total", map[string]string{"direction": "out"})
		flags, _ := value(mfs, "netfilter_conntrack_invalid_packets_total",
			map[string]string{"family": "ipv4", "proto": "tcp", "reason": "invalid tcp flag combination", "direction": "in"})
		if in == counters["inv_in"] && out == counters["inv_out"] && flags == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: in %v out %v (flag combination %v), the ct state invalid counters %v; log:\n%s", in, out, flags, counters, e.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if during := read(); during == before {
		t.Errorf("the sysctls did not change: %q", during)
	}
	if err := e.terminate(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for read() != before || !strings.Contains(e.stderr.String(), "restored the sysctls") {
		if time.Now().After(deadline) {
			t.Fatalf("sysctls after exit:\n%s\nwant as before:\n%s\nand a log saying they were restored:\n%s", read(), before, e.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExporterNflogStoppedDuringABurst stops the exporter (SIGSTOP) while
// a burst is logged to its group, with a buffer far too small for it:
// counted plus lost, as /metrics reads them once it runs again, equals the
// rule's counter.
func TestExporterNflogStoppedDuringABurst(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "ip6tables")
	f := netnstest.NewNflogFixture(t)
	e := startExporter(t, "--netns="+f.B.Path(), "--collector.disable-defaults", "--nflog.group=6",
		"--nflog.receive-buffer=64KiB", "--nflog.receive-buffer-max=64KiB")
	// Wait until the group is bound: the exporter serves before.
	eventually(t, 10*time.Second, func() string {
		_, mfs := e.scrape(t)
		if v, ok := value(mfs, "netfilter_nflog_listener_up", nil); !ok || v != 1 {
			return "the nflog listener is not up"
		}
		return ""
	})
	if err := e.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c := f.A.Dial(t, "udp4", "192.0.2.2:9001")
	payload := make([]byte, 32)
	for i := range 20000 {
		if _, err := c.Write(payload); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	if err := e.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The loss at the end of the burst shows with the next packet: send
	// one at a time until the numbers add up.
	var counted, lost, logged float64
	eventually(t, 60*time.Second, func() string {
		for _, r := range f.Rules(t) {
			if r.Group == 6 {
				logged = float64(r.Packets)
			}
		}
		_, mfs := e.scrape(t)
		counted, _ = sum(mfs, "netfilter_nflog_packets_total", map[string]string{"group": "6"})
		lost, _ = sum(mfs, "netfilter_nflog_packets_lost_total", map[string]string{"group": "6"})
		if counted+lost == logged {
			return ""
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("counted %v + lost %v != logged %v", counted, lost, logged)
	})
	t.Logf("logged %v, counted %v, lost %v", logged, counted, lost)
	if lost == 0 {
		t.Error("nothing lost with a 64 KiB buffer while stopped: the test proves nothing")
	}
}

// TestExporterNflogNetworks logs UDP datagrams from two peers on two
// networks to group 5 and sums them with --nflog.group-by=src_net,dst_net
// over the networks of --config.file: each pair of networks holds exactly
// what the rule counted for its source, and the Graphite path names them.
func TestExporterNflogNetworks(t *testing.T) {
	netnstest.Require(t, "nft")
	lan, dmz, b := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, lan, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.Link(t, dmz, b, "198.51.100.1/24", "198.51.100.2/24")
	netnstest.NftLoad(t, b, `
table inet logging {
	counter from_lan { }
	counter from_dmz { }
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr 192.0.2.0/24 udp dport 9001 counter name "from_lan" log prefix "udp in " group 5
		ip saddr 198.51.100.0/24 udp dport 9001 counter name "from_dmz" log prefix "udp in " group 5
	}
}
`)
	b.ListenPacket(t, "udp4", ":9001")
	file := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(file, []byte("networks:\n  lan: [192.0.2.0/24]\n  dmz: [198.51.100.0/24]\n  self: [192.0.2.2/32, 198.51.100.2/32]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCarbon(t)
	e := startExporter(t, "--netns="+b.Path(), "--collector.disable-defaults", "--config.file="+file,
		"--nflog.group=5", "--nflog.group-by=src_net,dst_net",
		"--graphite.address="+c.l.Addr().String(), "--graphite.interval=300ms")
	eventually(t, 10*time.Second, func() string {
		if _, mfs := e.scrape(t); mustValue(t, mfs, "netfilter_nflog_listener_up", nil) != 1 {
			return "the nflog listener is not up"
		}
		return ""
	})
	for i, from := range []struct {
		ns  *netnstest.NS
		dst string
		n   int
	}{{lan, "192.0.2.2:9001", 7}, {dmz, "198.51.100.2:9001", 4}} {
		conn := from.ns.Dial(t, "udp4", from.dst)
		for range from.n {
			if _, err := conn.Write(make([]byte, 20+i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 30*time.Second, func() string {
		counters := map[string]netnstest.NftCounter{}
		for _, c := range netnstest.NftCounters(t, b) {
			counters[c.Name] = c
		}
		_, mfs := e.scrape(t)
		diff := ""
		for _, w := range []struct{ net, counter string }{{"lan", "from_lan"}, {"dmz", "from_dmz"}} {
			labels := map[string]string{"group": "5", "prefix": "udp in", "src_net": w.net, "dst_net": "self"}
			p, _ := value(mfs, "netfilter_nflog_packets_total", labels)
			by, _ := value(mfs, "netfilter_nflog_bytes_total", labels)
			if ref := counters[w.counter]; p != float64(ref.Packets) || by != float64(ref.Bytes) || ref.Packets == 0 {
				diff += fmt.Sprintf(" %s->self: %v packets %v bytes, the rule counted %d and %d;", w.net, p, by, ref.Packets, ref.Bytes)
			}
		}
		if _, n := sum(mfs, "netfilter_nflog_packets_total", nil); n != 2 && diff == "" {
			diff = fmt.Sprintf(" %d series, want 2", n)
		}
		return diff
	})
	c.waitFor(t, 20*time.Second, func(path string, v float64, _ int64) bool {
		return path == "netfilter.nflog.5.udp%20in.dmz.self.pkts" && v == 4
	})
}
