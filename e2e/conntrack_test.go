package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// seriesSums are the expected sums of one conntrack series.
type seriesSums struct {
	flows, origPackets, origBytes, replyPackets, replyBytes float64
}

// sumsByKey sums conntrack -L entries by the label values key gives them.
func sumsByKey(entries []netnstest.CTEntry, key func(netnstest.CTEntry) string) map[string]*seriesSums {
	m := make(map[string]*seriesSums)
	for _, e := range entries {
		k := key(e)
		if m[k] == nil {
			m[k] = &seriesSums{}
		}
		s := m[k]
		s.flows++
		s.origPackets += float64(e.OrigPackets)
		s.origBytes += float64(e.OrigBytes)
		s.replyPackets += float64(e.ReplyPackets)
		s.replyBytes += float64(e.ReplyBytes)
	}
	return m
}

// familyProtoDport gives an entry the label values of the default group-by.
func familyProtoDport(e netnstest.CTEntry) string {
	dport := e.Orig[3]
	if dport == "" {
		dport = "none"
	}
	return e.Family + "," + e.Proto + "," + dport
}

// seriesOf returns the label values of every sample of family name, joined
// in the order of keys, with their values.
func seriesOf(mfs map[string]*dto.MetricFamily, name string, keys []string, extra map[string]string) map[string]float64 {
	out := make(map[string]float64)
	mf, ok := mfs[name]
	if !ok {
		return out
	}
next:
	for _, m := range mf.GetMetric() {
		have := make(map[string]string)
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range extra {
			if have[k] != v {
				continue next
			}
		}
		vals := make([]string, len(keys))
		for i, k := range keys {
			vals[i] = have[k]
		}
		out[strings.Join(vals, ",")] = m.GetCounter().GetValue()
	}
	return out
}

// flushAndWait destroys every entry of ns and waits until the exporter has
// counted n events.
func flushAndWait(t *testing.T, e *exporter, ns *netnstest.NS, n int) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	ns.Run(t, "conntrack", "-F")
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, mfs := e.scrape(t)
		got := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
		if int(got) >= n {
			return body, mfs
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter counted %v DESTROY events, want %d; log:\n%s", got, n, e.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkSeries compares the exporter's flow series with the expected sums.
func checkSeries(t *testing.T, mfs map[string]*dto.MetricFamily, keys []string, want map[string]*seriesSums, family ...string) {
	t.Helper()
	flows := seriesOf(mfs, "netfilter_conntrack_flows_total", keys, nil)
	if len(family) == 1 {
		// Only the series of this family (the first key) are compared.
		for k := range flows {
			if !strings.HasPrefix(k, family[0]+",") {
				delete(flows, k)
			}
		}
	}
	op := seriesOf(mfs, "netfilter_conntrack_flow_packets_total", keys, map[string]string{"direction": "orig"})
	ob := seriesOf(mfs, "netfilter_conntrack_flow_bytes_total", keys, map[string]string{"direction": "orig"})
	rp := seriesOf(mfs, "netfilter_conntrack_flow_packets_total", keys, map[string]string{"direction": "reply"})
	rb := seriesOf(mfs, "netfilter_conntrack_flow_bytes_total", keys, map[string]string{"direction": "reply"})
	if len(flows) != len(want) {
		t.Errorf("exporter has %d series %v, want %d", len(flows), flows, len(want))
	}
	for k, w := range want {
		var got seriesSums
		missing := false
		for _, v := range []struct {
			name string
			m    map[string]float64
			to   *float64
		}{
			{"netfilter_conntrack_flows_total", flows, &got.flows},
			{"netfilter_conntrack_flow_packets_total{direction=\"orig\"}", op, &got.origPackets},
			{"netfilter_conntrack_flow_bytes_total{direction=\"orig\"}", ob, &got.origBytes},
			{"netfilter_conntrack_flow_packets_total{direction=\"reply\"}", rp, &got.replyPackets},
			{"netfilter_conntrack_flow_bytes_total{direction=\"reply\"}", rb, &got.replyBytes},
		} {
			x, ok := v.m[k]
			if !ok {
				t.Errorf("series %s: /metrics has no %s", k, v.name)
				missing = true
			}
			*v.to = x
		}
		if missing {
			continue
		}
		if got != *w {
			t.Errorf("series %s: exporter %+v, conntrack -L %+v", k, got, *w)
		}
	}
}

func TestExporterConntrackMatchesConntrackList(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl", "promtool")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.Link(t, a, b, "2001:db8::1/64", "2001:db8::2/64")
	netnstest.TrackConnections(t, b)
	c := newCarbon(t)
	e := startExporter(t, "--netns="+b.Path(), "--graphite.address="+c.l.Addr().String(), "--graphite.interval=300ms")

	netnstest.TCPExchange(t, a, b, "tcp4", "192.0.2.2:8080", 20000)
	netnstest.TCPExchange(t, a, b, "tcp4", "192.0.2.2:8080", 1234)
	netnstest.TCPExchange(t, a, b, "tcp6", "[2001:db8::2]:8443", 3000)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 5, 100)
	netnstest.UDPExchange(t, a, b, "udp6", "[2001:db8::2]:9001", 3, 200)
	netnstest.ICMPEcho(t, a, "192.0.2.2", 4)

	ref := netnstest.SettledConntrackList(t, b)
	if len(ref) != 6 {
		t.Fatalf("conntrack lists %d entries, want 6: %+v", len(ref), ref)
	}
	want := sumsByKey(ref, familyProtoDport)
	body, mfs := flushAndWait(t, e, b, len(ref))
	checkSeries(t, mfs, []string{"family", "proto", "dport"}, want)

	if v := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil); v != 0 {
		t.Errorf("events lost = %v, want 0", v)
	}
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "conntrack"}); v != 1 {
		t.Errorf("conntrack collector success = %v", v)
	}
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "conntrack_stats"}); v != 1 {
		t.Errorf("conntrack_stats collector success = %v", v)
	}
	// Two IPv4 TCP flows with both timestamps: two durations observed.
	hist := matching(mfs, "netfilter_conntrack_flow_duration_seconds", map[string]string{"family": "ipv4", "proto": "tcp"})
	if len(hist) != 1 {
		t.Fatalf("/metrics has %d duration histograms of ipv4 tcp, want 1; the family holds %s", len(hist), describe(mfs, "netfilter_conntrack_flow_duration_seconds"))
	}
	if durations := hist[0].GetHistogram().GetSampleCount(); durations != 2 {
		t.Errorf("duration histogram of ipv4 tcp counts %d flows, want 2", durations)
	}
	promtoolCheck(t, body)

	// The same sums reach Graphite under the documented paths.
	w := want["ipv4,tcp,8080"]
	for path, v := range map[string]float64{
		"netfilter.conntrack.ipv4.tcp.8080.flows":       w.flows,
		"netfilter.conntrack.ipv4.tcp.8080.orig.pkts":   w.origPackets,
		"netfilter.conntrack.ipv4.tcp.8080.orig.bytes":  w.origBytes,
		"netfilter.conntrack.ipv4.tcp.8080.reply.pkts":  w.replyPackets,
		"netfilter.conntrack.ipv4.tcp.8080.reply.bytes": w.replyBytes,
		"netfilter.conntrack.ipv6.udp.9001.orig.bytes":  want["ipv6,udp,9001"].origBytes,
		"netfilter.conntrack.ipv4.icmp.none.flows":      1,
	} {
		c.waitFor(t, 5*time.Second, func(p string, got float64, _ int64) bool { return p == path && got == v })
	}
}

func TestExporterConntrackSNAT(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, r, b := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, r, "192.0.2.1/24", "192.0.2.254/24")
	_, rOut := netnstest.Link(t, b, r, "198.51.100.2/24", "198.51.100.1/24")
	a.Run(t, "ip", "route", "add", "default", "via", "192.0.2.254")
	r.Run(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	r.Run(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", rOut, "-j", "MASQUERADE")
	netnstest.TrackConnections(t, r)
	e := startExporter(t, "--netns="+r.Path(), "--conntrack.group-by=family,proto,dport,nat")

	netnstest.TCPExchange(t, a, b, "tcp4", "198.51.100.2:80", 5000)
	netnstest.UDPExchange(t, a, b, "udp4", "198.51.100.2:53", 2, 40)
	netnstest.UDPExchange(t, a, r, "udp4", "192.0.2.254:5000", 1, 10) // to the router itself

	ref := netnstest.SettledConntrackList(t, r)
	want := sumsByKey(ref, func(e netnstest.CTEntry) string {
		nat := "none"
		if e.Reply[1] != e.Orig[0] {
			nat = "snat"
		}
		return e.Family + "," + e.Proto + "," + e.Orig[3] + "," + nat
	})
	if want["ipv4,tcp,80,snat"] == nil || want["ipv4,udp,53,snat"] == nil || want["ipv4,udp,5000,none"] == nil {
		t.Fatalf("the reference does not show the masqueraded flows: %+v", ref)
	}
	_, mfs := flushAndWait(t, e, r, len(ref))
	// The router's own IPv6 link-local chatter may add flows after the
	// reference was read; the test's traffic is all IPv4.
	for k := range want {
		if !strings.HasPrefix(k, "ipv4,") {
			delete(want, k)
		}
	}
	checkSeries(t, mfs, []string{"family", "proto", "dport", "nat"}, want, "ipv4")
}

// TestExporterConntrackConfig runs the config file features against real
// flows: named networks, port lists, filters and the series cap.
// filterConfig and filterTraffic are the filters cases of
// TestExporterConntrackConfig: one UDP flow accepted, one UDP flow denied,
// one TCP flow not accepted.
const filterConfig = "filters:\n  accept:\n    - {proto: [udp]}\n  deny:\n    - {dport: [9001]}\n"

func filterTraffic(t *testing.T, a, b *netnstest.NS) {
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 1, 10)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9001", 1, 10)
	netnstest.TCPExchange(t, a, b, "tcp4", "192.0.2.2:9002", 10)
}

func TestExporterConntrackConfig(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	tests := []struct {
		name    string
		config  string
		args    []string
		traffic func(t *testing.T, a, b *netnstest.NS)
		events  int
		keys    []string
		want    map[string]float64 // flows per series
		self    map[string]float64 // exporter metrics
	}{
		{
			name:   "named networks, longest prefix first",
			config: "networks:\n  web: [192.0.2.2/32]\n  lab: [192.0.2.0/24]\n",
			args:   []string{"--conntrack.group-by=dst_net,proto"},
			traffic: func(t *testing.T, a, b *netnstest.NS) {
				netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 1, 10)
				netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.3:9000", 1, 10)
				netnstest.UDPExchange(t, a, b, "udp6", "[2001:db8::2]:9000", 1, 10)
			},
			events: 3,
			keys:   []string{"dst_net", "proto"},
			want:   map[string]float64{"web,udp": 1, "lab,udp": 1, "other,udp": 1},
		},
		{
			name:   "port list",
			config: "ports: [9000, \"9100-9199\"]\n",
			args:   []string{"--conntrack.group-by=proto,dport"},
			traffic: func(t *testing.T, a, b *netnstest.NS) {
				netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 1, 10)
				netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9150", 1, 10)
				netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9001", 1, 10)
				netnstest.ICMPEcho(t, a, "192.0.2.2", 1)
			},
			events: 4,
			keys:   []string{"proto", "dport"},
			want:   map[string]float64{"udp,9000": 1, "udp,9100-9199": 1, "udp,other": 1, "icmp,none": 1},
		},
		{
			// In userspace every DESTROY event arrives and the filters
			// refuse two of them.
			name:    "filters in userspace",
			config:  filterConfig,
			args:    []string{"--conntrack.group-by=dport", "--conntrack.filter-place=userspace"},
			traffic: filterTraffic,
			events:  3,
			keys:    []string{"dport"},
			want:    map[string]float64{"9000": 1},
			self: map[string]float64{"netfilter_conntrack_events_filtered_total": 2,
				`netfilter_conntrack_filter_info{place="userspace"}`: 1},
		},
		{
			// The same in the kernel (the default): the same series, and
			// the refused events never reach the exporter.
			name:    "filters in the kernel",
			config:  filterConfig,
			args:    []string{"--conntrack.group-by=dport"},
			traffic: filterTraffic,
			events:  1,
			keys:    []string{"dport"},
			want:    map[string]float64{"9000": 1},
			self: map[string]float64{"netfilter_conntrack_events_filtered_total": 0,
				"netfilter_conntrack_destroy_events_total":           1,
				`netfilter_conntrack_filter_info{place="kernel"}`:    1,
				`netfilter_conntrack_filter_info{place="userspace"}`: 1},
		},
		{
			name: "series cap",
			args: []string{"--conntrack.group-by=dport", "--conntrack.max-series=3"},
			traffic: func(t *testing.T, a, b *netnstest.NS) {
				for port := 9000; port < 9005; port++ {
					netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:"+strconv.Itoa(port), 1, 10)
				}
			},
			events: 5,
			keys:   []string{"dport"},
			// Three series, the overflow series included: never more
			// than the limit.
			self: map[string]float64{
				"netfilter_conntrack_overflow_events_total": 3,
				"netfilter_conntrack_series_limit":          3,
				"netfilter_conntrack_series":                3,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := netnstest.New(t), netnstest.New(t)
			_, ifB := netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
			b.Run(t, "ip", "addr", "add", "192.0.2.3/24", "dev", ifB)
			netnstest.Link(t, a, b, "2001:db8::1/64", "2001:db8::2/64")
			netnstest.TrackConnections(t, b)
			args := append([]string{"--netns=" + b.Path(), "--no-collector.nfacct"}, tt.args...)
			if tt.config != "" {
				path := filepath.Join(t.TempDir(), "config.yml")
				if err := os.WriteFile(path, []byte(tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config.file="+path)
			}
			e := startExporter(t, args...)
			tt.traffic(t, a, b)
			netnstest.SettledConntrackList(t, b)
			_, mfs := flushAndWait(t, e, b, tt.events)

			flows := seriesOf(mfs, "netfilter_conntrack_flows_total", tt.keys, nil)
			if tt.want != nil && fmt.Sprint(flows) != fmt.Sprint(tt.want) {
				t.Errorf("flows = %v, want %v", flows, tt.want)
			}
			if tt.name == "series cap" {
				// Which two ports get their own series depends on event
				// order; the overflow series takes the rest, and no flow is
				// lost.
				var total float64
				for k, v := range flows {
					total += v
					if k != "other" && v != 1 {
						t.Errorf("series %s has %v flows, want 1", k, v)
					}
				}
				if len(flows) != 3 || flows["other"] != 3 || total != 5 {
					t.Errorf("flows = %v, want 2 ports with 1 flow and other with 3", flows)
				}
			}
			if strings.HasPrefix(tt.name, "filters in the kernel") {
				// Events refused in the kernel are never counted: wait
				// for any that would wrongly arrive.
				time.Sleep(500 * time.Millisecond)
				_, mfs = e.scrape(t)
			}
			for name, want := range tt.self {
				var labels map[string]string
				if n, l, ok := strings.Cut(name, `{place="`); ok {
					name, labels = n, map[string]string{"place": strings.TrimSuffix(l, `"}`)}
				}
				if got := mustValue(t, mfs, name, labels); got != want {
					t.Errorf("%s%v = %v, want %v", name, labels, got, want)
				}
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(good, []byte("networks:\n  lan: [192.168.0.0/16]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("networks:\n  lan: [192.168.0.0/33]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		ok      bool
		message string
	}{
		{[]string{"--config.file=" + good}, true, "configuration OK"},
		{[]string{"--config.file=" + bad}, false, "networks.lan[0]"},
		{[]string{"--config.file=" + filepath.Join(dir, "missing.yml")}, false, "missing.yml"},
		{[]string{"--conntrack.group-by=family,colour"}, false, "colour"},
		{[]string{"--conntrack.receive-buffer=huge"}, false, "--conntrack.receive-buffer"},
	}
	for _, tt := range tests {
		out, err := exec.Command(binary, append([]string{"--config.check"}, tt.args...)...).CombinedOutput()
		if (err == nil) != tt.ok || !strings.Contains(string(out), tt.message) {
			t.Errorf("--config.check %v: error %v, output %q; want ok=%v and %q", tt.args, err, out, tt.ok, tt.message)
		}
	}
}

// TestExporterConntrackTopTalkers checks the top talkers against the flow
// series of the same run, summed by source: the same bytes per direction,
// error 0, largest first, IPv6 aggregated to its /64; and /top.json and
// /top serve them.
func TestExporterConntrackTopTalkers(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.Link(t, a, b, "2001:db8::1/64", "2001:db8::2/64")
	netnstest.TrackConnections(t, b)
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.group-by=src", "--conntrack.top.count=5")
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 5, 300)
	netnstest.UDPExchange(t, a, b, "udp6", "[2001:db8::2]:9000", 2, 100)
	netnstest.SettledConntrackList(t, b)
	_, mfs := flushAndWait(t, e, b, 2)

	want := map[string]string{"192.0.2.1": "192.0.2.1", "2001:db8::1": "2001:db8::/64"}
	for src, key := range want {
		for _, dir := range []string{"orig", "reply"} {
			flow := mustValue(t, mfs, "netfilter_conntrack_flow_bytes_total", map[string]string{"src": src, "direction": dir})
			top := mustValue(t, mfs, "netfilter_conntrack_top_bytes", map[string]string{"src": key, "direction": dir})
			if flow == 0 || top != flow {
				t.Errorf("%s %s: top talker bytes %v, flow series %v", key, dir, top, flow)
			}
		}
		if v := mustValue(t, mfs, "netfilter_conntrack_top_bytes_error", map[string]string{"src": key}); v != 0 {
			t.Errorf("%s: error %v, want 0 (exact)", key, v)
		}
	}
	if v := mustValue(t, mfs, "netfilter_conntrack_top_capacity", nil); v != 8192 {
		t.Errorf("capacity %v", v)
	}
	resp, err := http.Get(e.url + "/top.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Enabled bool `json:"enabled"`
		Rows    []struct {
			Key map[string]string `json:"key"`
		} `json:"rows"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	if !page.Enabled || len(page.Rows) != 2 || page.Rows[0].Key["src"] != "192.0.2.1" || page.Rows[1].Key["src"] != "2001:db8::/64" {
		t.Errorf("/top.json = %+v, want 192.0.2.1 (1,500 bytes a way) then 2001:db8::/64 (200)", page)
	}
}

// topPage is what the tests read of /top.json.
type topPage struct {
	Enabled        bool `json:"enabled"`
	LiveAccounting bool `json:"live_accounting"`
	Rows           []struct {
		Key        map[string]string `json:"key"`
		OrigBytes  uint64            `json:"orig_bytes"`
		ReplyBytes uint64            `json:"reply_bytes"`
	} `json:"rows"`
	FlowsIntervalSeconds float64 `json:"flows_interval_seconds"`
	Flows                []struct {
		Proto   string `json:"proto"`
		Src     string `json:"src"`
		SrcPort uint16 `json:"src_port"`
		Dst     string `json:"dst"`
		DstPort uint16 `json:"dst_port"`
		NAT     bool   `json:"nat"`
		Reply   *struct {
			Src     string `json:"src"`
			SrcPort uint16 `json:"src_port"`
			Dst     string `json:"dst"`
			DstPort uint16 `json:"dst_port"`
		} `json:"reply"`
		Bytes          uint64  `json:"bytes"`
		BytesPerSecond float64 `json:"bytes_per_second"`
	} `json:"flows"`
}

// get returns the body of path on e.
func (e *exporter) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, b.String())
	}
	return b.String()
}

func (e *exporter) topJSON(t *testing.T) topPage {
	t.Helper()
	var p topPage
	if err := json.Unmarshal([]byte(e.get(t, "/top.json")), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExporterConntrackTopFlows runs a TCP transfer through a DNAT rule
// while /top.json is read: the flow shows among the flows moving the most
// bytes now, with its 5-tuple, the reply tuple the NAT gave it and a rate
// above 0, and its source's talker bytes grow dump after dump; /top shows
// it too. Without live accounting, the page says flows need it.
func TestExporterConntrackTopFlows(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	b.Run(t, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "192.0.2.2:8080")
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.group-by=src",
		"--conntrack.top.count=5", "--conntrack.poll-interval=100ms")
	sink(t, b.Listen(t, "tcp4", "192.0.2.2:8080"))

	c := a.Dial(t, "tcp4", "192.0.2.2:8081")
	read := drain(c)
	sport := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	stop := make(chan struct{})
	written := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			select {
			case <-stop:
				written <- nil
				return
			default:
			}
			if _, err := c.Write(chunk); err != nil {
				written <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	var talker []uint64 // the source's bytes, read after read
	found := false
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && (!found || len(talker) < 3) {
		p := e.topJSON(t)
		for _, r := range p.Rows {
			if r.Key["src"] == "192.0.2.1" && (len(talker) == 0 || r.OrigBytes+r.ReplyBytes > talker[len(talker)-1]) {
				talker = append(talker, r.OrigBytes+r.ReplyBytes)
			}
		}
		for _, f := range p.Flows {
			if f.Proto != "tcp" || f.Src != "192.0.2.1" || f.SrcPort != sport || f.Dst != "192.0.2.2" || f.DstPort != 8081 {
				continue
			}
			found = true
			if !f.NAT || f.Reply == nil || *f.Reply != (struct {
				Src     string `json:"src"`
				SrcPort uint16 `json:"src_port"`
				Dst     string `json:"dst"`
				DstPort uint16 `json:"dst_port"`
			}{"192.0.2.2", 8080, "192.0.2.1", sport}) {
				t.Errorf("flow %+v: want NAT with reply 192.0.2.2:8080 -> 192.0.2.1:%d", f, sport)
			}
			if f.Bytes == 0 || f.BytesPerSecond <= 0 || p.FlowsIntervalSeconds <= 0 {
				t.Errorf("flow %+v over %vs: want bytes and a rate above 0", f, p.FlowsIntervalSeconds)
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	if !found {
		t.Errorf("/top.json never showed the running flow 192.0.2.1:%d -> 192.0.2.2:8081:\n%s", sport, e.get(t, "/top.json"))
	}
	if len(talker) < 3 {
		t.Errorf("the source's talker bytes grew in %d reads while the flow ran, want at least 3: %v", len(talker), talker)
	}
	page := e.get(t, "/top")
	for _, w := range []string{"192.0.2.1:" + strconv.Itoa(int(sport)), "192.0.2.2:8081", "192.0.2.2:8080 → 192.0.2.1:" + strconv.Itoa(int(sport))} {
		if !strings.Contains(page, w) {
			t.Errorf("/top lacks %q:\n%s", w, page)
		}
	}
	close(stop)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	closeAndSettle(t, c, read)

	off := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.top.count=5", "--conntrack.poll-interval=0")
	if p := off.topJSON(t); p.LiveAccounting || len(p.Flows) != 0 {
		t.Errorf("without live accounting: live_accounting %v, %d flows", p.LiveAccounting, len(p.Flows))
	}
	for _, w := range []string{"DESTROY events only", "Flows are shown only with live accounting"} {
		if page := off.get(t, "/top"); !strings.Contains(page, w) {
			t.Errorf("/top without live accounting lacks %q:\n%s", w, page)
		}
	}
}

// TestExporterConntrackTopWindow checks that the top talkers forget what
// is older than their window: a talker whose flows ended is gone from
// /metrics and /top.json once the window (6s, in steps of 1s) has passed,
// and not before 5s.
func TestExporterConntrackTopWindow(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.top.count=5", "--conntrack.top.window=6s", "--conntrack.poll-interval=0")
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 3, 200)
	start := time.Now() // no byte of the flow is counted before
	_, mfs := flushAndWait(t, e, b, 1)
	src := map[string]string{"src": "192.0.2.1"}
	if v, _ := sum(mfs, "netfilter_conntrack_top_bytes", src); v == 0 {
		t.Fatalf("no top talker bytes for 192.0.2.1 once its flow ended:\n%s", describe(mfs, "netfilter_conntrack_top_bytes"))
	}
	mfs = waitUntil(t, e, 15*time.Second, "192.0.2.1 still a top talker 15s after its flow ended, with a 6s window", func(mfs map[string]*dto.MetricFamily) bool {
		_, n := sum(mfs, "netfilter_conntrack_top_bytes", src)
		return n == 0
	})
	if gone := time.Since(start); gone < 5*time.Second {
		t.Errorf("192.0.2.1 gone %v after its flow ended, before the 6s window less a step", gone)
	}
	if v := mustValue(t, mfs, "netfilter_conntrack_top_keys_tracked", nil); v != 0 {
		t.Errorf("%v keys tracked once the window passed, want 0", v)
	}
	if p := e.topJSON(t); len(p.Rows) != 0 {
		t.Errorf("/top.json rows once the window passed: %+v", p.Rows)
	}
}

// TestExporterConntrackDumpFiltered checks that the entries a dump lists
// and the filters refuse are counted: real flows in a namespace, two of
// them to denied ports, in the table when the exporter's first dump runs.
func TestExporterConntrackDumpFiltered(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 1, 10)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9001", 1, 10)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9002", 1, 10)
	ref := netnstest.SettledConntrackList(t, b)
	denied, accepted := 0, 0
	for _, e := range ref {
		if e.Orig[3] == "9001" || e.Orig[3] == "9002" {
			denied++
		} else {
			accepted++
		}
	}
	if denied != 2 {
		t.Fatalf("conntrack lists %d entries to ports 9001 and 9002, want 2: %+v", denied, ref)
	}
	path := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(path, []byte("filters:\n  deny:\n    - {dport: [9001, 9002]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// One dump, at start: the interval is longer than the test.
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--config.file="+path,
		"--conntrack.group-by=dport", "--conntrack.poll-interval=1h")
	var mfs map[string]*dto.MetricFamily
	eventually(t, 10*time.Second, func() string {
		_, mfs = e.scrape(t)
		if v, _ := value(mfs, "netfilter_conntrack_dumps_total", nil); v != 1 {
			return fmt.Sprintf("dumps_total = %v, want 1; log:\n%s", v, e.stderr)
		}
		return ""
	})
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"netfilter_conntrack_dump_entries_filtered_total", nil, float64(denied)},
		{"netfilter_conntrack_dump_entries", nil, float64(accepted)},
		{"netfilter_conntrack_flows_active", map[string]string{"dport": "9000"}, 1},
		{"netfilter_conntrack_events_filtered_total", nil, 0},
	} {
		if got := mustValue(t, mfs, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, port := range []string{"9001", "9002"} {
		if got := matching(mfs, "netfilter_conntrack_flows_active", map[string]string{"dport": port}); len(got) != 0 {
			t.Errorf("a series of the denied port %s: %v", port, got)
		}
	}
}
