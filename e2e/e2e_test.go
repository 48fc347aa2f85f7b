package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
)

// startCarbon runs a real carbon-cache on the loopback of ns, with tags on
// and a throwaway configuration and whisper directory under dir.
func startCarbon(t *testing.T, ns *netnstest.NS, dir string) {
	t.Helper()
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{conf, filepath.Join(dir, "whisper"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	carbonConf := fmt.Sprintf(`[cache]
STORAGE_DIR = %[1]s/
LOCAL_DATA_DIR = %[1]s/whisper/
CONF_DIR = %[1]s/conf/
LOG_DIR = %[1]s/log/
PID_DIR = %[1]s/
DATABASE = whisper
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_CREATES_PER_MINUTE = 100000
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = 2003
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = 2004
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = 7002
ENABLE_TAGS = True
`, dir)
	schemas := "[all]\npattern = .*\nretentions = 1s:1h\n"
	if err := os.WriteFile(filepath.Join(conf, "carbon.conf"), []byte(carbonConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "storage-schemas.conf"), []byte(schemas), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "carbon.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	ns.Start(t, log, "carbon-cache", "--config="+filepath.Join(conf, "carbon.conf"), "--debug", "start")
	waitListening(t, ns, "127.0.0.1:2003")
}

// waitListening waits until something accepts TCP connections on addr in ns.
func waitListening(t *testing.T, ns *netnstest.NS, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ns.Do(func() error {
			c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s in %s after 30s: %v", addr, ns.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery runs an instant query against the Prometheus API and returns the
// value of its single sample, or false when there is none.
func promQuery(t *testing.T, ns *netnstest.NS, query string) (float64, bool) {
	t.Helper()
	resp, err := ns.HTTPClient().Get("http://127.0.0.1:9090/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" || len(r.Data.Result) != 1 {
		return 0, false
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// whisperLast returns the newest stored value of a whisper file.
func whisperLast(path string) (float64, bool) {
	out, err := exec.Command("whisper-fetch", "--from="+strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10), path).Output()
	if err != nil {
		return 0, false
	}
	var last float64
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] != "None" {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				last, found = v, true
			}
		}
	}
	return last, found
}

// taggedWhisperPath is where carbon stores a tagged series: under _tagged,
// by the SHA-256 of its canonical name.
func taggedWhisperPath(dir, name string) string {
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(dir, "whisper", "_tagged", h[:3], h[3:6], h+".wsp")
}

// eventually retries check until it returns "" or the time runs out, and
// fails with its last complaint.
func eventually(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestEndToEndPrometheusAndCarbon runs the real servers: carbon-cache and
// Prometheus on the loopback of a test namespace, the exporter there too,
// with nfacct objects, iptables rules, real traffic and conntrack flows. The
// values Prometheus's API returns and the values carbon wrote to whisper
// must be exactly what the kernel counted.
func TestEndToEndPrometheusAndCarbon(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "nfacct", "nft", "conntrack", "sysctl", "prometheus", "carbon-cache", "whisper-fetch")
	// Traffic flows from a to b; the servers and the exporter live on the
	// loopback of mon, so that their own connections stay out of b's
	// conntrack table.
	start := time.Now()
	a, b, mon := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	dir := t.TempDir()

	client, err := nfacct.Dial(&nfacct.Config{NetNS: b.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Create(context.Background(), nfacct.Object{Name: "e2e.udp"}); err != nil {
		t.Fatal(err)
	}
	b.Run(t, "iptables", "-I", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", "e2e.udp")
	// The same datagrams, counted by an nf_tables named counter whose
	// dotted name is one escaped level in Graphite, and by two quotas for
	// the dashboards' quota panels: e2e.q stays under its limit, e2e.full
	// (an over quota, 4 datagrams) is exhausted; and logged to nflog group
	// 5 for the dashboards' NFLOG panels. No verdict: they only count.
	netnstest.NftLoad(t, b, `table inet e2e {
	counter e2e.udp { }
	quota e2e.q { until 1 mbytes }
	quota e2e.full { over 512 bytes }
	chain input {
		type filter hook input priority 0;
		udp dport 9000 counter name "e2e.udp"
		udp dport 9000 quota name "e2e.q"
		udp dport 9000 quota name "e2e.full"
		udp dport 9000 log prefix "e2e " group 5
	}
}`)
	// Quota objects of both units, with names of one and two levels, for
	// the dashboards' quota panels.
	for _, o := range []nfacct.Object{
		{Name: "e2eqb", Flags: nfacct.FlagQuotaBytes, Quota: 1 << 20},
		{Name: "e2eqp", Flags: nfacct.FlagQuotaPackets, Quota: 1000},
		{Name: "e2e.site.a.qb", Flags: nfacct.FlagQuotaBytes, Quota: 1 << 20},
		{Name: "e2e.qp", Flags: nfacct.FlagQuotaPackets, Quota: 1000},
	} {
		if err := client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		b.Run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", o.Name)
	}

	startCarbon(t, mon, dir)
	logs, err := os.Create(filepath.Join(dir, "exporters.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	// One exporter with dotted paths, one with tagged series. The first
	// counts nflog group 5 and conntrack's invalid packets (a group has one
	// listener).
	mon.Start(t, logs, binary, "--netns="+b.Path(), "--web.listen-address=127.0.0.1:9862",
		"--graphite.address=127.0.0.1:2003", "--graphite.interval=1s", "--nflog.group=5", "--nflog.conntrack-invalid", "--conntrack.top.count=10")
	mon.Start(t, logs, binary, "--netns="+b.Path(), "--web.listen-address=127.0.0.1:9863",
		"--graphite.address=127.0.0.1:2003", "--graphite.interval=1s",
		"--graphite.tagged", "--graphite.prefix=tagged", "--no-collector.conntrack")
	waitListening(t, mon, "127.0.0.1:9862")
	// The nflog listener binds its groups after the server is up.
	eventually(t, 10*time.Second, func() string {
		if body := waitMetrics(t, mon.HTTPClient(), "http://127.0.0.1:9862/metrics"); !strings.Contains(body, "\nnetfilter_nflog_listener_up 1\n") {
			return "the nflog listener of the exporter on 127.0.0.1:9862 is not up"
		}
		return ""
	})

	promConf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promConf, []byte(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: netfilter
    static_configs:
      - targets: ["127.0.0.1:9862"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	mon.Start(t, logs, "prometheus", "--config.file="+promConf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address=127.0.0.1:9090")
	waitListening(t, mon, "127.0.0.1:9090")

	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 6, 100)
	netnstest.TCPExchange(t, a, b, "tcp4", "192.0.2.2:8080", 7000)
	ref := netnstest.SettledConntrackList(t, b)
	want := sumsByKey(ref, familyProtoDport)
	b.Run(t, "conntrack", "-F")
	nf := nfacctList(t, b)["e2e.udp"]
	if nf != [2]float64{6, 6 * 128} {
		t.Fatalf("nfacct list shows e2e.udp = %v, want 6 packets of 128 bytes", nf)
	}
	tcp := want["ipv4,tcp,8080"]
	var nft [2]float64
	found := false
	for _, c := range netnstest.NftCounters(t, b) {
		if c.Table == "e2e" && c.Name == "e2e.udp" {
			nft, found = [2]float64{float64(c.Packets), float64(c.Bytes)}, true
		}
	}
	if !found {
		t.Fatal("nft lists no counter e2e.udp in table e2e")
	}
	if nft != nf {
		t.Fatalf("nft shows e2e.udp = %v, want what nfacct counted: %v", nft, nf)
	}
	quotas := map[string]netnstest.NftQuota{}
	for _, q := range netnstest.NftQuotas(t, b) {
		if q.Table == "e2e" {
			quotas[q.Name] = q
		}
	}
	if q := quotas["e2e.q"]; q.Used != uint64(nf[1]) || q.Limit != 1<<20 || q.Over {
		t.Fatalf("nft shows quota e2e.q = %+v, want until 1 MiB with the %v bytes nfacct counted used", q, nf[1])
	}
	if q := quotas["e2e.full"]; q.Used != q.Limit || q.Limit != 512 || !q.Over {
		t.Fatalf("nft shows quota e2e.full = %+v, want over 512 bytes, used up", q)
	}

	// Prometheus, through its HTTP API.
	for query, v := range map[string]float64{
		`up{job="netfilter"}`:                            1,
		`netfilter_nfacct_bytes_total{name="e2e.udp"}`:   nf[1],
		`netfilter_nfacct_packets_total{name="e2e.udp"}`: nf[0],
		`sum(netfilter_conntrack_flows_total)`:           float64(len(ref)),
		`netfilter_conntrack_flow_bytes_total{direction="orig",family="ipv4",proto="tcp",dport="8080"}`:  tcp.origBytes,
		`netfilter_conntrack_flow_bytes_total{direction="reply",family="ipv4",proto="tcp",dport="8080"}`: tcp.replyBytes,
		`netfilter_conntrack_events_lost_total`:                                                          0,
		`netfilter_nftables_counter_bytes_total{family="inet",table="e2e",name="e2e.udp"}`:               nft[1],
		`netfilter_nftables_counter_packets_total{family="inet",table="e2e",name="e2e.udp"}`:             nft[0],
		`netfilter_nflog_packets_total{group="5",prefix="e2e"}`:                                          nft[0],
		`netfilter_nflog_bytes_total{group="5",prefix="e2e"}`:                                            nft[1],
		`netfilter_nflog_packets_lost_total{group="5"}`:                                                  0,
		`netfilter_nftables_quota_used_bytes{family="inet",table="e2e",name="e2e.q"}`:                    float64(quotas["e2e.q"].Used),
		`netfilter_nftables_quota_limit_bytes{family="inet",table="e2e",name="e2e.q"}`:                   float64(quotas["e2e.q"].Limit),
		`netfilter_nftables_quota_exhausted{family="inet",table="e2e",name="e2e.q"}`:                     0,
		// The expression of the NetfilterNftablesQuotaExhausted alert finds
		// e2e.full, and only it, with its mode.
		`count(netfilter_nftables_quota_exhausted * on(job, instance, family, table, name) group_left(mode) netfilter_nftables_quota_info == 1)`:                   1,
		`netfilter_nftables_quota_exhausted{name="e2e.full"} * on(job, instance, family, table, name) group_left(mode) netfilter_nftables_quota_info{mode="over"}`: 1,
	} {
		eventually(t, 30*time.Second, func() string {
			if got, ok := promQuery(t, mon, query); !ok || got != v {
				return fmt.Sprintf("Prometheus answers %s = %v (found %v), want %v", query, got, ok, v)
			}
			return ""
		})
	}

	// carbon, in the whisper files it wrote.
	for path, v := range map[string]float64{
		filepath.Join(dir, "whisper/netfilter/nfacct/e2e/udp/bytes.wsp"):                                   nf[1],
		filepath.Join(dir, "whisper/netfilter/nfacct/e2e/udp/pkts.wsp"):                                    nf[0],
		filepath.Join(dir, "whisper/netfilter/conntrack/ipv4/tcp/8080/flows.wsp"):                          tcp.flows,
		filepath.Join(dir, "whisper/netfilter/conntrack/ipv4/tcp/8080/orig/bytes.wsp"):                     tcp.origBytes,
		filepath.Join(dir, "whisper/netfilter/conntrack/ipv4/tcp/8080/reply/pkts.wsp"):                     tcp.replyPackets,
		taggedWhisperPath(dir, "tagged.nfacct_bytes_total;object=e2e.udp"):                                 nf[1],
		taggedWhisperPath(dir, "tagged.nfacct_packets_total;object=e2e.udp"):                               nf[0],
		filepath.Join(dir, "whisper/netfilter/nftables/inet/e2e/e2e%2Eudp/bytes.wsp"):                      nft[1],
		filepath.Join(dir, "whisper/netfilter/nftables/inet/e2e/e2e%2Eudp/pkts.wsp"):                       nft[0],
		filepath.Join(dir, "whisper/netfilter/nflog/5/e2e/pkts.wsp"):                                       nft[0],
		taggedWhisperPath(dir, "tagged.nftables_counter_bytes_total;family=inet;object=e2e.udp;table=e2e"): nft[1],
		filepath.Join(dir, "whisper/netfilter/nftables/inet/e2e/e2e%2Eq/quota/used.wsp"):                   float64(quotas["e2e.q"].Used),
		filepath.Join(dir, "whisper/netfilter/nftables/inet/e2e/e2e%2Efull/quota/exhausted.wsp"):           1,
	} {
		eventually(t, 30*time.Second, func() string {
			if got, ok := whisperLast(path); !ok || got != v {
				return fmt.Sprintf("whisper %s holds %v (found %v), want %v", path, got, ok, v)
			}
			return ""
		})
	}

	// SYN+FIN segments, which conntrack finds invalid, for the dashboards'
	// invalid-reason panels; the flows are counted already.
	netnstest.SendTCPFlags(t, a, "192.0.2.1", "192.0.2.2", 80, 0x03, 5)
	eventually(t, 30*time.Second, func() string {
		q := `netfilter_conntrack_invalid_packets_total{family="ipv4",proto="tcp",reason="invalid tcp flag combination",direction="in"}`
		if got, ok := promQuery(t, mon, q); !ok || got != 5 {
			return fmt.Sprintf("Prometheus answers %s = %v (found %v), want the 5 SYN+FIN segments", q, got, ok)
		}
		return ""
	})

	// The dashboards, against the same Prometheus and carbon, with a TCP
	// connection left open so that live accounting has active flows.
	l := b.Listen(t, "tcp4", "192.0.2.2:8443")
	go func() {
		if c, err := l.Accept(); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	open := a.Dial(t, "tcp4", "192.0.2.2:8443")
	defer open.Close()
	if _, err := open.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	checkPrometheusDashboard(t, mon, start)
	checkGraphiteDashboard(t, filepath.Join(dir, "whisper"))
}
