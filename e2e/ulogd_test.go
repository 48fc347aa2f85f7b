package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// plaintextSink keeps the latest value of every Graphite path it receives
// on a listener in a namespace.
type plaintextSink struct {
	mu   sync.Mutex
	last map[string]string
}

func newPlaintextSink(t *testing.T, ns *netnstest.NS, addr string) *plaintextSink {
	t.Helper()
	s := &plaintextSink{last: map[string]string{}}
	l := ns.Listen(t, "tcp4", addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if f := strings.Fields(sc.Text()); len(f) == 3 {
						s.mu.Lock()
						s.last[f[0]] = f[1]
						s.mu.Unlock()
					}
				}
			}()
		}
	}()
	return s
}

// under returns the latest values of the paths under prefix, keyed by the
// rest of the path.
func (s *plaintextSink) under(prefix string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for p, v := range s.last {
		if rest, ok := strings.CutPrefix(p, prefix+"."); ok {
			out[rest] = v
		}
	}
	return out
}

// ulogdPlugins returns the directory of ulogd2's plugins.
func ulogdPlugins(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/*/ulogd/ulogd_inpflow_NFACCT.so")
	if len(m) == 0 {
		m, _ = filepath.Glob("/usr/lib/ulogd/ulogd_inpflow_NFACCT.so")
	}
	if len(m) == 0 {
		t.Fatal("ulogd2's NFACCT plugin is not installed")
	}
	return filepath.Dir(m[0])
}

// startUlogdNfacct runs ulogd2's NFACCT -> GRAPHITE stack in ns, polling
// every second, with the given extra NFACCT settings.
func startUlogdNfacct(t *testing.T, ns *netnstest.NS, carbon, prefix, nfacctSettings string) {
	t.Helper()
	dir := t.TempDir()
	host, port, _ := strings.Cut(carbon, ":")
	conf := filepath.Join(dir, "ulogd.conf")
	cfg := fmt.Sprintf(`[global]
logfile="%[1]s/ulogd.log"
loglevel=3
plugin="%[2]s/ulogd_inpflow_NFACCT.so"
plugin="%[2]s/ulogd_output_GRAPHITE.so"
stack=acct1:NFACCT,graphite1:GRAPHITE

[acct1]
pollinterval=1
%[3]s

[graphite1]
host="%[4]s"
port="%[5]s"
prefix="%[6]s"
`, dir, ulogdPlugins(t), nfacctSettings, host, port, prefix)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Start(t, os.Stderr, "ulogd", "-c", conf)
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "ulogd.log"))
			t.Logf("ulogd.log:\n%s", log)
		}
	})
}

// TestUlogd2SideBySide checks what the migration page says about running
// ulogd2 2.0.8 and the exporter at once. With zerocounter=0, ulogd2's
// NFACCT -> GRAPHITE stack and the exporter (default cumulative mode, the
// page's command) send the same paths with the same values, which are what
// nfacct list shows. Without it, ulogd2 zeroes the kernel's counters at
// every poll.
func TestUlogd2SideBySide(t *testing.T) {
	netnstest.Require(t, "ulogd", "iptables", "nfacct")
	// side.web:8080 is sent as it is by both: the exporter escapes only
	// what carbon cannot store or graphite-web cannot query, not ':'.
	objects := []string{"side.web", "side.dns", "side.web:8080"}
	setup := func(t *testing.T) *netnstest.NS {
		ns := netnstest.New(t)
		for i, o := range objects {
			ns.Run(t, "nfacct", "add", o)
			ns.Run(t, "iptables", "-A", "OUTPUT", "-p", "udp", "--dport", fmt.Sprint(9000+i), "-m", "nfacct", "--nfacct-name", o)
		}
		return ns
	}
	traffic := func(t *testing.T, ns *netnstest.NS) {
		for i := range objects {
			ns.ListenPacket(t, "udp4", fmt.Sprintf("127.0.0.1:%d", 9000+i))
			netnstest.SendUDP(t, ns, fmt.Sprintf("127.0.0.1:%d", 9000+i), 3+i, 100)
		}
	}

	t.Run("zerocounter=0", func(t *testing.T) {
		ns := setup(t)
		sink := newPlaintextSink(t, ns, "127.0.0.1:2003")
		startUlogdNfacct(t, ns, "127.0.0.1:2003", "ulogd.nfacct", "zerocounter=0")
		ns.Start(t, os.Stderr, binary, "--web.listen-address=127.0.0.1:9862",
			"--collector.disable-defaults", "--collector.nfacct",
			"--graphite.address=127.0.0.1:2003", "--graphite.interval=1s", "--graphite.prefix=netfilter")
		traffic(t, ns)
		var want map[string]string
		eventually(t, 20*time.Second, func() string {
			want = map[string]string{}
			for name, v := range netnstest.NfacctList(t, ns) {
				want[name+".pkts"] = fmt.Sprint(v[0])
				want[name+".bytes"] = fmt.Sprint(v[1])
			}
			got := map[string]map[string]string{"ulogd2": sink.under("ulogd.nfacct"), "exporter": sink.under("netfilter.nfacct")}
			for who, paths := range got {
				for p, v := range want {
					if paths[p] != v {
						return fmt.Sprintf("%s sends %s = %q, nfacct list shows %s (ulogd2 %v, exporter %v)", who, p, paths[p], v, got["ulogd2"], got["exporter"])
					}
				}
			}
			return ""
		})
		if want["side.web.pkts"] != "3" || want["side.dns.pkts"] != "4" {
			t.Errorf("nfacct list shows %v after ulogd2 polled with zerocounter=0, want the 3 and 4 packets sent", want)
		}
		// The same paths: ulogd2's are all the exporter sends under nfacct
		// (its own object count is under exporter, where no object name
		// reaches).
		exporter := sink.under("netfilter.nfacct")
		if u := sink.under("ulogd.nfacct"); len(u) != len(exporter) {
			t.Errorf("ulogd2 sends paths %v, the exporter %v", u, exporter)
		}
		// With --collector.disable-defaults --collector.nfacct nothing but
		// those paths and the exporter's own health is sent.
		for p := range sink.under("netfilter") {
			if !strings.HasPrefix(p, "nfacct.") && !strings.HasPrefix(p, "exporter.") {
				t.Errorf("the exporter sends netfilter.%s, which is neither ulogd2's nor its own health", p)
			}
		}
	})

	t.Run("default get-and-reset", func(t *testing.T) {
		ns := setup(t)
		newPlaintextSink(t, ns, "127.0.0.1:2003")
		startUlogdNfacct(t, ns, "127.0.0.1:2003", "ulogd.nfacct", "")
		traffic(t, ns)
		eventually(t, 10*time.Second, func() string {
			if v := netnstest.NfacctList(t, ns)["side.dns"]; v != [2]uint64{0, 0} {
				return fmt.Sprintf("nfacct list shows side.dns = %v: ulogd2 without zerocounter=0 should have reset it", v)
			}
			return ""
		})
	})
}

// ulogdPluginDir is where the migration page's configurations load
// ulogd2's plugins from (Debian's path on amd64).
const ulogdPluginDir = "/usr/lib/x86_64-linux-gnu/ulogd"

// TestUlogd2DocumentedConfigs loads every ulogd2 configuration of the
// migration page, as written, into a real ulogd2 2.0.8, and checks that it
// does what the page says it does: the NFACCT stacks send the objects'
// counters to carbon under their prefix, the NFCT stack writes a line per
// ended flow. Only the plugin directory (where this machine's differs), the
// files under /var/log/ulogd/ (to a test directory) and the poll interval
// (60 s to 1 s) are changed.
func TestUlogd2DocumentedConfigs(t *testing.T) {
	netnstest.Require(t, "ulogd", "nfacct", "conntrack")
	const page = "docs/ulogd2-migration.md"
	var configs []string
	inINI := false
	var cur strings.Builder
	for _, l := range strings.Split(string(mustRead(t, page)), "\n") {
		switch {
		case strings.TrimSpace(l) == "```ini":
			inINI = true
			cur.Reset()
		case inINI && strings.HasPrefix(strings.TrimSpace(l), "```"):
			inINI = false
			if strings.Contains(cur.String(), "stack=") {
				configs = append(configs, cur.String())
			}
		case inINI:
			cur.WriteString(l + "\n")
		}
	}
	if len(configs) < 3 {
		t.Fatalf("%s has %d ulogd2 configurations with a stack, want at least 3", page, len(configs))
	}
	for i, conf := range configs {
		if !strings.HasPrefix(conf, "[global]\n") {
			t.Errorf("configuration %d of %s does not start with [global]: ulogd -c refuses it (\"Fatal error.\")", i+1, page)
			continue
		}
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			ns := netnstest.New(t)
			dir := t.TempDir()
			run := strings.ReplaceAll(conf, ulogdPluginDir, ulogdPlugins(t))
			run = strings.ReplaceAll(run, "/var/log/ulogd/", dir+"/")
			run = strings.ReplaceAll(run, "pollinterval=60", "pollinterval=1")
			file := filepath.Join(dir, "ulogd.conf")
			if err := os.WriteFile(file, []byte(run), 0o644); err != nil {
				t.Fatal(err)
			}
			logs := func() string {
				b, _ := os.ReadFile(filepath.Join(dir, "ulogd.log"))
				return string(b)
			}
			switch {
			case strings.Contains(conf, ":NFACCT"):
				prefix := regexp.MustCompile(`prefix="([^"]+)"`).FindStringSubmatch(conf)
				if prefix == nil {
					t.Fatal("an NFACCT stack without a GRAPHITE prefix")
				}
				ns.Run(t, "nfacct", "add", "doc.web")
				sink := newPlaintextSink(t, ns, "127.0.0.1:2003")
				ns.Start(t, os.Stderr, "ulogd", "-c", file)
				eventually(t, 20*time.Second, func() string {
					if _, ok := sink.under(prefix[1])["doc.web.pkts"]; !ok {
						return fmt.Sprintf("carbon got no %s.doc.web.pkts from ulogd2; its log:\n%s", prefix[1], logs())
					}
					return ""
				})
			case strings.Contains(conf, ":NFCT"):
				ns.Run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_events=1")
				ns.Start(t, os.Stderr, "ulogd", "-c", file)
				flows := regexp.MustCompile(`(?m)^file="([^"]+)"`).FindStringSubmatch(run)
				if flows == nil {
					t.Fatal("an NFCT stack without a LOGEMU file")
				}
				// With accept_src_filter, the flow comes from its first
				// IPv4 network, and one from outside it comes before and
				// must not be logged.
				src, refused := "198.18.7.1", ""
				if m := regexp.MustCompile(`(?m)^accept_src_filter=(\d+\.\d+)\.`).FindStringSubmatch(conf); m != nil {
					src, refused = m[1]+".7.1", "198.18.7.1"
				}
				flow := func(src string) {
					args := []string{"-s", src, "-d", "198.18.7.2", "-p", "udp", "--sport", "4000", "--dport", "53"}
					_, _ = ns.Try("conntrack", append([]string{"-I", "-t", "60"}, args...)...)
					_, _ = ns.Try("conntrack", append([]string{"-D"}, args...)...)
				}
				eventually(t, 20*time.Second, func() string {
					// A flow made and ended through ctnetlink, until ulogd2
					// (which may still be starting) has logged one.
					if refused != "" {
						flow(refused)
					}
					flow(src)
					if b, _ := os.ReadFile(flows[1]); !strings.Contains(string(b), "SRC="+src+" ") {
						return fmt.Sprintf("ulogd2 logged no ended flow from %s to %s; its log:\n%s", src, flows[1], logs())
					}
					return ""
				})
				if b, _ := os.ReadFile(flows[1]); refused != "" && strings.Contains(string(b), "SRC="+refused+" ") {
					t.Errorf("ulogd2 logged the flow from %s, which accept_src_filter refuses:\n%s", refused, b)
				}
			case strings.Contains(conf, ":NFLOG"):
				group := regexp.MustCompile(`(?m)^group=(\d+)`).FindStringSubmatch(conf)
				packets := regexp.MustCompile(`(?m)^file="([^"]+)"`).FindStringSubmatch(run)
				if group == nil || packets == nil {
					t.Fatal("an NFLOG stack without a group or a LOGEMU file")
				}
				ns.Run(t, "nft", "add table inet doc; add chain inet doc out { type filter hook output priority 0; }; add rule inet doc out udp dport 9 log prefix \"doc-rule \" group "+group[1])
				ns.Start(t, os.Stderr, "ulogd", "-c", file)
				eventually(t, 20*time.Second, func() string {
					// A logged datagram, until ulogd2 (which may still be
					// starting) has written one.
					_ = ns.Do(func() error {
						c, err := net.Dial("udp4", "127.0.0.1:9")
						if err == nil {
							_, _ = c.Write([]byte("x"))
							c.Close()
						}
						return nil
					})
					if b, _ := os.ReadFile(packets[1]); !strings.Contains(string(b), "doc-rule") {
						return fmt.Sprintf("ulogd2 logged no packet to %s; its log:\n%s", packets[1], logs())
					}
					return ""
				})
			default:
				t.Fatalf("configuration %d: a stack of neither NFACCT, NFCT nor NFLOG:\n%s", i+1, conf)
			}
		})
	}
}
