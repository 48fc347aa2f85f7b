package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// nftSeries is what /metrics holds of one family of nf_tables series,
// by label values joined with spaces.
func nftSeries(mfs map[string]*dto.MetricFamily, name string, labels ...string) map[string]float64 {
	m := make(map[string]float64)
	for _, metric := range mfs[name].GetMetric() {
		have := make(map[string]string)
		for _, lp := range metric.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		key := make([]string, len(labels))
		for i, l := range labels {
			key[i] = have[l]
		}
		v := metric.GetGauge().GetValue()
		if metric.Counter != nil {
			v = metric.GetCounter().GetValue()
		}
		m[strings.Join(key, " ")] = v
	}
	return m
}

// nftWant is what /metrics must hold, by family name, for what nft shows.
func nftWant(counters []netnstest.NftCounter, quotas []netnstest.NftQuota) map[string]map[string]float64 {
	want := map[string]map[string]float64{
		"netfilter_nftables_counter_packets_total": {}, "netfilter_nftables_counter_bytes_total": {},
		"netfilter_nftables_quota_limit_bytes": {}, "netfilter_nftables_quota_used_bytes": {},
		"netfilter_nftables_quota_exhausted": {}, "netfilter_nftables_quota_info": {},
	}
	for _, c := range counters {
		k := c.Family + " " + c.Table + " " + c.Name
		want["netfilter_nftables_counter_packets_total"][k] = float64(c.Packets)
		want["netfilter_nftables_counter_bytes_total"][k] = float64(c.Bytes)
	}
	for _, q := range quotas {
		k := q.Family + " " + q.Table + " " + q.Name
		want["netfilter_nftables_quota_limit_bytes"][k] = float64(q.Limit)
		want["netfilter_nftables_quota_used_bytes"][k] = float64(q.Used)
		exhausted, mode := 0.0, "until"
		if q.Used >= q.Limit {
			exhausted = 1
		}
		if q.Over {
			mode = "over"
		}
		want["netfilter_nftables_quota_exhausted"][k] = exhausted
		want["netfilter_nftables_quota_info"][k+" "+mode] = 1
	}
	return want
}

// scrapeNft scrapes e between two readings of nft that agree, and fails the
// test unless /metrics holds exactly what nft shows. It returns the body
// and nft's readings.
func scrapeNft(t *testing.T, e *exporter, ns *netnstest.NS) (string, map[string]*dto.MetricFamily, []netnstest.NftCounter, []netnstest.NftQuota) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counters, quotas := netnstest.NftCounters(t, ns), netnstest.NftQuotas(t, ns)
		body, mfs := e.scrape(t)
		if !cmp.Equal(counters, netnstest.NftCounters(t, ns)) || !cmp.Equal(quotas, netnstest.NftQuotas(t, ns)) {
			if time.Now().After(deadline) {
				t.Fatal("the nf_tables counters did not stay still for one scrape in 30s")
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for name, want := range nftWant(counters, quotas) {
			labels := []string{"family", "table", "name"}
			if name == "netfilter_nftables_quota_info" {
				labels = append(labels, "mode")
			}
			if diff := cmp.Diff(want, nftSeries(mfs, name, labels...)); diff != "" {
				t.Errorf("%s differs from nft -j list counters/quotas (-nft +/metrics):\n%s", name, diff)
			}
		}
		return body, mfs, counters, quotas
	}
}

// TestExporterNftables runs the exporter on a namespace with nf_tables
// tables of every family fed by real TCP and UDP traffic: /metrics must
// hold exactly what nft shows, reading must not reset anything, the
// Graphite lines must carry the documented paths, and a table added and
// deleted while the exporter runs must come and go.
func TestExporterNftables(t *testing.T) {
	netnstest.Require(t, "nft", "sysctl", "promtool")
	f := netnstest.NewNftFixture(t)
	c := newCarbon(t)
	e := startExporter(t, "--netns="+f.B.Path(), "--nftables.rule-counters",
		"--graphite.address="+c.l.Addr().String(), "--graphite.interval=300ms")

	body, mfs, counters, _ := scrapeNft(t, e, f.B)
	promtoolCheck(t, body)
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "nftables"}); v != 1 {
		t.Errorf("collector success = %v, want 1", v)
	}
	// Every family of the fixture is there, with what the traffic added.
	families := map[string]bool{}
	for _, cnt := range counters {
		families[cnt.Family] = true
	}
	for _, fam := range []string{"ip", "ip6", "inet", "bridge", "netdev", "arp"} {
		if !families[fam] {
			t.Errorf("nft shows no counter of family %s; the fixture is broken", fam)
		}
	}
	for _, w := range []struct {
		labels map[string]string
		want   netnstest.NftCounter
	}{
		{map[string]string{"family": "inet", "table": "filter", "name": "dns.v4"}, f.UDP4},
		{map[string]string{"family": "inet", "table": "filter", "name": "dns/v6"}, f.UDP6},
		{map[string]string{"family": "ip", "table": "v4", "name": "svc9000"}, f.UDP4},
		{map[string]string{"family": "ip6", "table": "v6", "name": "svc9000"}, f.UDP6},
	} {
		pkts := mustValue(t, mfs, "netfilter_nftables_counter_packets_total", w.labels)
		bytes := mustValue(t, mfs, "netfilter_nftables_counter_bytes_total", w.labels)
		if pkts != float64(w.want.Packets) || bytes != float64(w.want.Bytes) {
			t.Errorf("/metrics shows %v = %v packets %v bytes, want %d and %d", w.labels, pkts, bytes, w.want.Packets, w.want.Bytes)
		}
	}
	small := map[string]string{"family": "inet", "table": "filter", "name": "small"}
	if v := mustValue(t, mfs, "netfilter_nftables_quota_exhausted", small); v != 1 {
		t.Errorf("quota small: exhausted = %v, want 1", v)
	}
	if v := mustValue(t, mfs, "netfilter_nftables_quota_info", map[string]string{"name": "big", "mode": "over"}); v != 1 {
		t.Errorf("quota big with mode over: info = %v, want 1", v)
	}
	if v := mustValue(t, mfs, "netfilter_nftables_rule_packets_total", map[string]string{"family": "inet", "table": "filter", "chain": "input", "comment": "udp in"}); v != 12 {
		t.Errorf("rule counter \"udp in\" = %v, want 12", v)
	}

	// Reading did not reset anything: nft still shows the exact counts.
	for _, cnt := range netnstest.NftCounters(t, f.B) {
		if cnt.Table == "filter" && cnt.Name == "dns.v4" && (cnt.Packets != f.UDP4.Packets || cnt.Bytes != f.UDP4.Bytes) {
			t.Errorf("nft shows dns.v4 = %+v after the scrapes, want %+v", cnt, f.UDP4)
		}
	}

	// Graphite: every element escaped, so dotted and slashed names stay one
	// level.
	want := map[string]float64{
		"netfilter.nftables.inet.filter.dns%2Ev4.pkts":             float64(f.UDP4.Packets),
		"netfilter.nftables.inet.filter.dns%2Ev4.bytes":            float64(f.UDP4.Bytes),
		"netfilter.nftables.inet.filter.dns%2Fv6.bytes":            float64(f.UDP6.Bytes),
		"netfilter.nftables.ip6.v6.svc9000.pkts":                   float64(f.UDP6.Packets),
		"netfilter.nftables.inet.filter.small.quota.limit":         500,
		"netfilter.nftables.inet.filter.small.quota.used":          500,
		"netfilter.nftables.inet.filter.small.quota.exhausted":     1,
		"netfilter.nftables.inet.filter.big.quota.limit":           10 << 20,
		"netfilter.exporter.nftables.objects.counter":              8,
		"netfilter.nftables.rules.inet.filter.input.udp%20in.pkts": 12,
		"netfilter.exporter.nftables.rule_counters_omitted":        0,
		"netfilter.exporter.collector.nftables.success":            1,
	}
	waitPaths(t, c, want)

	// A table added while the exporter runs shows up; deleted, it goes.
	late := map[string]string{"family": "ip6", "table": "late", "name": "x"}
	f.B.Run(t, "nft", "add table ip6 late; add counter ip6 late x { packets 2 bytes 3 }")
	_, mfs, _, _ = scrapeNft(t, e, f.B)
	if v := mustValue(t, mfs, "netfilter_nftables_counter_bytes_total", late); v != 3 {
		t.Errorf("the counter of a table added while the exporter runs reads %v, want 3", v)
	}
	f.B.Run(t, "nft", "delete table ip6 late")
	_, mfs, _, _ = scrapeNft(t, e, f.B)
	if len(matching(mfs, "netfilter_nftables_counter_packets_total", late)) != 0 {
		t.Error("the counter of a deleted table is still on /metrics")
	}
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "nftables"}); v != 1 {
		t.Errorf("collector success = %v after the table went, want 1", v)
	}
}

// waitPaths reads carbon's lines until each path of want has been seen
// with its value.
func waitPaths(t *testing.T, c *carbon, want map[string]float64) {
	t.Helper()
	missing := make(map[string]float64, len(want))
	for k, v := range want {
		missing[k] = v
	}
	deadline := time.After(10 * time.Second)
	for len(missing) > 0 {
		select {
		case line := <-c.lines:
			var path string
			var v float64
			var ts int64
			if _, err := fmt.Sscan(line, &path, &v, &ts); err != nil {
				t.Fatalf("carbon got a malformed line %q", line)
			}
			if w, ok := missing[path]; ok && w == v {
				delete(missing, path)
			}
		case <-deadline:
			t.Fatalf("no Graphite line within 10s for %v", missing)
		}
	}
}
