package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
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
			"--no-collector.conntrack", "--no-collector.conntrack_stats",
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
