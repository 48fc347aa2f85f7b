package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/netfilter-exporter/netfilter_exporter/nftables"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// DefaultRuleCountersLimit is the default of NftablesConfig.RuleCountersLimit.
const DefaultRuleCountersLimit = 1000

var errRuleCountersLimit = errors.New("--nftables.rule-counters-limit must be at least 1")

// NftablesReader reads nf_tables named counters and quotas, and the
// counters of rules; *nftables.Conn is one.
type NftablesReader interface {
	Objects(ctx context.Context) (nftables.Objects, error)
	RuleCounters(ctx context.Context) ([]nftables.RuleCounter, error)
}

// NftablesConfig configures the nftables collector.
type NftablesConfig struct {
	// RuleCounters also exports the anonymous counters of the rules that
	// carry a comment, summed by family, table, chain and comment.
	RuleCounters bool
	// RuleCountersLimit is the most rule counter series exported: the first
	// ones in family, table, chain and comment order. The others are left
	// out and counted.
	RuleCountersLimit int
}

// Validate checks the configuration.
func (cfg NftablesConfig) Validate() error {
	if cfg.RuleCountersLimit < 1 {
		return fmt.Errorf("%w, got %d", errRuleCountersLimit, cfg.RuleCountersLimit)
	}
	return nil
}

// Nftables collects the named counters and quotas of every nf_tables
// table, and optionally the counters of commented rules.
type Nftables struct {
	src NftablesReader
	cfg NftablesConfig

	packets, bytes, limit, used, exhausted, info, objects *tree.Desc
	rulePackets, ruleBytes, ruleOmitted, ruleLimit        *tree.Desc
}

// NewNftables returns an nftables collector reading from src.
func NewNftables(src NftablesReader, cfg NftablesConfig) (*Nftables, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	const ns = namespace + "_nftables_"
	obj := []string{"family", "table", "name"}
	rule := []string{"family", "table", "chain", "comment"}
	return &Nftables{
		src: src,
		cfg: cfg,
		packets: tree.NewDesc(ns+"counter_packets_total",
			"Packets counted by the nf_tables named counter, as the kernel holds them.", tree.Counter, obj...),
		bytes: tree.NewDesc(ns+"counter_bytes_total",
			"Bytes counted by the nf_tables named counter, as the kernel holds them.", tree.Counter, obj...),
		limit: tree.NewDesc(ns+"quota_limit_bytes",
			"Limit of the nf_tables named quota, in bytes.", tree.Gauge, obj...),
		used: tree.NewDesc(ns+"quota_used_bytes",
			"Bytes the nf_tables named quota has consumed; the kernel reports at most the limit.", tree.Gauge, obj...),
		exhausted: tree.NewDesc(ns+"quota_exhausted",
			"Whether the nf_tables named quota has used up its limit (1) or not (0): from then on its rules match if its mode is over, and no longer match if it is until.", tree.Gauge, obj...),
		info: tree.NewDesc(ns+"quota_info",
			"Mode of the nf_tables named quota, always 1: until (its rules match until the limit is used up, nft's default) or over (they match once it is).", tree.Gauge, "family", "table", "name", "mode"),
		objects: tree.NewDesc(ns+"objects",
			"Number of nf_tables named objects of the type, in every table.", tree.Gauge, "type"),
		rulePackets: tree.NewDesc(ns+"rule_packets_total",
			"Packets counted by the anonymous counters of the nf_tables rules that carry the comment in the chain, summed.", tree.Counter, rule...),
		ruleBytes: tree.NewDesc(ns+"rule_bytes_total",
			"Bytes counted by the anonymous counters of the nf_tables rules that carry the comment in the chain, summed.", tree.Counter, rule...),
		ruleOmitted: tree.NewDesc(ns+"rule_counters_omitted",
			"Rule counter series left out of this reading because --nftables.rule-counters-limit was reached.", tree.Gauge),
		ruleLimit: tree.NewDesc(ns+"rule_counters_limit",
			"Most rule counter series exported (--nftables.rule-counters-limit).", tree.Gauge),
	}, nil
}

// Update reads the named objects (and the rule counters, if asked) and adds
// their samples to b.
func (c *Nftables) Update(ctx context.Context, b *tree.Builder) error {
	objs, err := c.src.Objects(ctx)
	if err != nil {
		return err
	}
	var rules []nftables.RuleCounter
	if c.cfg.RuleCounters {
		if rules, err = c.src.RuleCounters(ctx); err != nil {
			return err
		}
	}
	b.Add(c.objects, float64(len(objs.Counters)), []string{"exporter", "nftables", "objects", "counter"}, "counter")
	b.Add(c.objects, float64(len(objs.Quotas)), []string{"exporter", "nftables", "objects", "quota"}, "quota")

	// The label values and Graphite paths of the whole reading share one
	// allocation; each sample gets its own window of it. The label values
	// (family, table, name) are a window of the first path.
	strs := make([]string, 0, 10*len(objs.Counters)+22*len(objs.Quotas))
	for i := range objs.Counters {
		o := &objs.Counters[i]
		fam := o.Family.String()
		n := len(strs)
		strs = append(strs,
			"nftables", fam, o.Table, o.Name, "pkts",
			"nftables", fam, o.Table, o.Name, "bytes")
		lv := strs[n+1 : n+4 : n+4]
		b.Add(c.packets, float64(o.Packets), strs[n:n+5:n+5], lv...)
		b.Add(c.bytes, float64(o.Bytes), strs[n+5:n+10:n+10], lv...)
	}
	for i := range objs.Quotas {
		o := &objs.Quotas[i]
		fam := o.Family.String()
		n := len(strs)
		strs = append(strs,
			"nftables", fam, o.Table, o.Name, "quota", "limit",
			"nftables", fam, o.Table, o.Name, "quota", "used",
			"nftables", fam, o.Table, o.Name, "quota", "exhausted",
			fam, o.Table, o.Name, o.Mode())
		lv := strs[n+1 : n+4 : n+4]
		b.Add(c.limit, float64(o.Limit), strs[n:n+6:n+6], lv...)
		b.Add(c.used, float64(o.Used), strs[n+6:n+12:n+12], lv...)
		b.Add(c.exhausted, boolValue(o.Exhausted), strs[n+12:n+18:n+18], lv...)
		b.Add(c.info, 1, nil, strs[n+18:n+22:n+22]...)
	}
	if c.cfg.RuleCounters {
		c.addRules(b, rules)
	}
	return nil
}

func boolValue(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// ruleSeries is the sum of the counters of the rules with one comment in
// one chain.
type ruleSeries struct {
	family, table, chain, comment string
	packets, bytes                uint64
}

// addRules sums the counters of commented rules by family, table, chain
// and comment, and adds the first RuleCountersLimit series to b.
func (c *Nftables) addRules(b *tree.Builder, rules []nftables.RuleCounter) {
	type key struct {
		family              nftables.Family
		table, chain, cmmnt string
	}
	index := make(map[key]int)
	var series []ruleSeries
	for i := range rules {
		r := &rules[i]
		if r.Comment == "" {
			continue
		}
		k := key{r.Family, r.Table, r.Chain, r.Comment}
		j, ok := index[k]
		if !ok {
			j = len(series)
			index[k] = j
			series = append(series, ruleSeries{family: r.Family.String(), table: r.Table, chain: r.Chain, comment: r.Comment})
		}
		series[j].packets += r.Packets
		series[j].bytes += r.Bytes
	}
	slices.SortFunc(series, func(a, b ruleSeries) int {
		return cmp.Or(cmp.Compare(a.family, b.family), cmp.Compare(a.table, b.table),
			cmp.Compare(a.chain, b.chain), cmp.Compare(a.comment, b.comment))
	})
	omitted := 0
	if len(series) > c.cfg.RuleCountersLimit {
		omitted = len(series) - c.cfg.RuleCountersLimit
		series = series[:c.cfg.RuleCountersLimit]
	}
	b.Add(c.ruleLimit, float64(c.cfg.RuleCountersLimit), []string{"exporter", "nftables", "rule_counters_limit"})
	b.Add(c.ruleOmitted, float64(omitted), []string{"exporter", "nftables", "rule_counters_omitted"})
	strs := make([]string, 0, 14*len(series))
	for i := range series {
		s := &series[i]
		n := len(strs)
		strs = append(strs,
			"nftables", "rules", s.family, s.table, s.chain, s.comment, "pkts",
			"nftables", "rules", s.family, s.table, s.chain, s.comment, "bytes")
		lv := strs[n+2 : n+6 : n+6]
		b.Add(c.rulePackets, float64(s.packets), strs[n:n+7:n+7], lv...)
		b.Add(c.ruleBytes, float64(s.bytes), strs[n+7:n+14:n+14], lv...)
	}
}
