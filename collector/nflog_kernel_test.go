package collector

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nflog"
)

// TestKernelNflogThroughTheCollector counts real traffic through nft log
// and iptables NFLOG rules with the collector: its series, summed by group
// and prefix, equal the rules' own counters, and the in key names the
// interface.
func TestKernelNflogThroughTheCollector(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "ip6tables")
	f := netnstest.NewNflogFixture(t)
	l, err := nflog.Listen(&nflog.Config{NetNS: f.B.FD(), Groups: []uint16{5, 6, 7}, ReadBuffer: 4 << 20, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewNflog(l, NflogConfig{GroupBy: []string{"family", "in"}, InterfaceName: func(uint32) string { return f.IfB }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Listen(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen: %v", err)
		}
		l.Close()
	}()
	f.Send(t, 10)
	g := exposition.NewGatherer(NewSet(map[string]Collector{"nflog": c}, 5*time.Second, discard))
	deadline := time.Now().Add(30 * time.Second)
	for {
		rules := f.Rules(t)
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		var lost float64
		ins := map[string]bool{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				ls := map[string]string{}
				for _, lp := range m.GetLabel() {
					ls[lp.GetName()] = lp.GetValue()
				}
				switch mf.GetName() {
				case "netfilter_nflog_packets_total", "netfilter_nflog_bytes_total":
					got[fmt.Sprintf("%s %s/%q", strings.TrimPrefix(mf.GetName(), "netfilter_nflog_"), ls["group"], ls["prefix"])] += m.GetCounter().GetValue()
					ins[ls["in"]] = true
				case "netfilter_nflog_packets_lost_total":
					lost += m.GetCounter().GetValue()
				}
			}
		}
		want := map[string]float64{}
		for _, r := range rules {
			key := fmt.Sprintf("%d/%q", r.Group, strings.TrimSpace(r.Prefix))
			want["packets_total "+key] += float64(r.Packets)
			want["bytes_total "+key] += float64(r.Bytes)
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			if lost != 0 || len(ins) != 1 || !ins[f.IfB] {
				t.Errorf("lost %v, in %v (want only %s)", lost, ins, f.IfB)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector's sums\n%v\ndiffer from the rules' counters\n%v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
