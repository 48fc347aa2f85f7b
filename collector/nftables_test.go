package collector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/nftables"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

type fakeNftables struct {
	objs      nftables.Objects
	rules     []nftables.RuleCounter
	objsErr   error
	rulesErr  error
	ruleReads int
}

func (f *fakeNftables) Objects(context.Context) (nftables.Objects, error) { return f.objs, f.objsErr }

func (f *fakeNftables) RuleCounters(context.Context) ([]nftables.RuleCounter, error) {
	f.ruleReads++
	return f.rules, f.rulesErr
}

var testNftObjects = nftables.Objects{
	Counters: []nftables.Counter{
		{Family: nftables.FamilyINet, Table: "filter", Name: "web", Packets: 1234, Bytes: 987654},
		{Family: nftables.FamilyIPv4, Table: "nat", Name: "dns.v4", Packets: 5, Bytes: 400},
		{Family: nftables.FamilyNetdev, Table: "edge", Name: "ingress", Packets: 7, Bytes: 700},
	},
	Quotas: []nftables.Quota{
		{Family: nftables.FamilyINet, Table: "filter", Name: "guest", Limit: 1 << 20, Used: 1 << 20, Exhausted: true},
		{Family: nftables.FamilyBridge, Table: "br", Name: "cap", Limit: 1 << 30, Used: 5000, Over: true},
	},
}

var testNftRules = []nftables.RuleCounter{
	{Family: nftables.FamilyINet, Table: "filter", Chain: "input", Handle: 4, Comment: "web in", Packets: 10, Bytes: 1000},
	// A second rule with the same comment in the same chain is summed in.
	{Family: nftables.FamilyINet, Table: "filter", Chain: "input", Handle: 9, Comment: "web in", Packets: 1, Bytes: 60},
	{Family: nftables.FamilyINet, Table: "filter", Chain: "forward", Handle: 5, Comment: "web in", Packets: 2, Bytes: 200},
	{Family: nftables.FamilyIPv6, Table: "f6", Chain: "input", Handle: 2, Comment: "ssh", Packets: 3, Bytes: 300},
	// Rules without a comment are not exported.
	{Family: nftables.FamilyINet, Table: "filter", Chain: "input", Handle: 6, Packets: 99, Bytes: 9900},
}

func TestNftablesGolden(t *testing.T) {
	tests := []struct {
		name   string
		cfg    NftablesConfig
		golden string
	}{
		{name: "named objects", cfg: NftablesConfig{RuleCountersLimit: DefaultRuleCountersLimit}, golden: "testdata/nftables.prom"},
		{name: "rule counters", cfg: NftablesConfig{RuleCounters: true, RuleCountersLimit: 2}, golden: "testdata/nftables_rules.prom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeNftables{objs: testNftObjects, rules: testNftRules}
			c, err := NewNftables(src, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := exposition.NewGatherer(NewSet(map[string]Collector{"nftables": c}, time.Second, discard))
			checkGolden(t, p, tt.golden)
			if !tt.cfg.RuleCounters && src.ruleReads > 0 {
				t.Error("rules were dumped though rule counters are off")
			}
		})
	}
}

func TestNftablesGraphitePaths(t *testing.T) {
	c, err := NewNftables(&fakeNftables{objs: testNftObjects, rules: testNftRules}, NftablesConfig{RuleCounters: true, RuleCountersLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	var b tree.Builder
	if err := c.Update(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range b.Samples() {
		if s.GraphitePath() != nil {
			got = append(got, strings.Join(s.GraphitePath(), "/")+"="+strconv.FormatFloat(s.Value, 'f', -1, 64))
		}
	}
	// Elements are raw: the Graphite writer escapes "dns.v4" into one level.
	want := []string{
		"exporter/nftables/objects/counter=3", "exporter/nftables/objects/quota=2",
		"nftables/inet/filter/web/pkts=1234", "nftables/inet/filter/web/bytes=987654",
		"nftables/ip/nat/dns.v4/pkts=5", "nftables/ip/nat/dns.v4/bytes=400",
		"nftables/netdev/edge/ingress/pkts=7", "nftables/netdev/edge/ingress/bytes=700",
		"nftables/inet/filter/guest/quota/limit=1048576", "nftables/inet/filter/guest/quota/used=1048576",
		"nftables/inet/filter/guest/quota/exhausted=1",
		"nftables/bridge/br/cap/quota/limit=1073741824", "nftables/bridge/br/cap/quota/used=5000",
		"nftables/bridge/br/cap/quota/exhausted=0",
		"exporter/nftables/rule_counters_limit=2", "exporter/nftables/rule_counters_omitted=1",
		"nftables/rules/inet/filter/forward/web in/pkts=2", "nftables/rules/inet/filter/forward/web in/bytes=200",
		"nftables/rules/inet/filter/input/web in/pkts=11", "nftables/rules/inet/filter/input/web in/bytes=1060",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Graphite paths (-want +got):\n%s", diff)
	}
}

func TestNftablesErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  *fakeNftables
	}{
		{"objects", &fakeNftables{objsErr: errors.New("dumping nf_tables objects: operation not permitted")}},
		{"rules", &fakeNftables{objs: testNftObjects, rulesErr: errors.New("dumping nf_tables rules: operation not permitted")}},
	} {
		c, err := NewNftables(tt.src, NftablesConfig{RuleCounters: true, RuleCountersLimit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Update(context.Background(), &tree.Builder{}); err == nil {
			t.Errorf("%s: Update succeeded though the dump failed", tt.name)
		}
	}
}

func TestNftablesBadLimit(t *testing.T) {
	for _, limit := range []int{0, -1} {
		if _, err := NewNftables(&fakeNftables{}, NftablesConfig{RuleCountersLimit: limit}); !errors.Is(err, errRuleCountersLimit) {
			t.Errorf("limit %d: error = %v, want errRuleCountersLimit", limit, err)
		}
	}
}

// BenchmarkNftablesUpdate measures the collector's own share of a reading
// of 10,000 named counters and 1,000 quotas, without the kernel: from the
// decoded objects to the samples of the tree, then rendered as /metrics
// serves it (and parsed back).
func BenchmarkNftablesUpdate(b *testing.B) {
	var objs nftables.Objects
	for i := range 10000 {
		objs.Counters = append(objs.Counters, nftables.Counter{Family: nftables.FamilyINet, Table: "filter", Name: fmt.Sprintf("svc%d", i), Packets: uint64(i), Bytes: uint64(i) * 1500})
	}
	for i := range 1000 {
		objs.Quotas = append(objs.Quotas, nftables.Quota{Family: nftables.FamilyINet, Table: "filter", Name: fmt.Sprintf("q%d", i), Limit: 1 << 30, Used: uint64(i)})
	}
	c, err := NewNftables(&fakeNftables{objs: objs}, NftablesConfig{RuleCountersLimit: DefaultRuleCountersLimit})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("update", func(b *testing.B) {
		var tb tree.Builder
		b.ReportAllocs()
		for range b.N {
			tb.Reset()
			if err := c.Update(context.Background(), &tb); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gather", func(b *testing.B) {
		g := exposition.NewGatherer(NewSet(map[string]Collector{"nftables": c}, time.Minute, discard))
		b.ReportAllocs()
		for range b.N {
			if _, err := g.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
