package collector

import (
	"context"
	"slices"

	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// flowFamilies are the metric families of the conntrack flow series and of
// the aggregation's own counts. Their labels are the group-by keys.
type flowFamilies struct {
	keys                                                 int
	flows, packets, bytes, duration, active, tcpActive   *tree.Desc
	series, limit, overflowEvents, expired, filteredDesc *tree.Desc
	buckets                                              []float64
}

func newFlowFamilies(keys []flow.Key) *flowFamilies {
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = string(k)
	}
	dirLabels := append([]string{"direction"}, labels...)
	const ns = namespace + "_conntrack_"
	return &flowFamilies{
		keys: len(keys),
		flows: tree.NewDesc(ns+"flows_total",
			"Conntrack flows that ended, by the keys of --conntrack.group-by.", tree.Counter, labels...),
		packets: tree.NewDesc(ns+"flow_packets_total",
			"Packets of conntrack flows, per direction, by the keys of --conntrack.group-by.", tree.Counter, dirLabels...),
		bytes: tree.NewDesc(ns+"flow_bytes_total",
			"Bytes of conntrack flows, per direction, by the keys of --conntrack.group-by.", tree.Counter, dirLabels...),
		duration: tree.NewDesc(ns+"flow_duration_seconds",
			"How long conntrack flows lasted, from their start and stop timestamps.", tree.Histogram, "family", "proto"),
		active: tree.NewDesc(ns+"flows_active",
			"Conntrack flows in the table at the latest dump, by the keys of --conntrack.group-by.", tree.Gauge, labels...),
		tcpActive: tree.NewDesc(ns+"tcp_flows_active",
			"TCP conntrack flows in the table at the latest dump, by TCP state and the keys of --conntrack.group-by.", tree.Gauge, append(slices.Clone(labels), "state")...),
		series: tree.NewDesc(ns+"series",
			"Number of conntrack flow series held, the overflow series included.", tree.Gauge),
		limit: tree.NewDesc(ns+"series_limit",
			"Most conntrack flow series held before new key combinations go to the overflow series.", tree.Gauge),
		overflowEvents: tree.NewDesc(ns+"overflow_events_total",
			"Conntrack flow deltas summed into the overflow series because the series limit was reached.", tree.Counter),
		expired: tree.NewDesc(ns+"series_expired_total",
			"Conntrack flow series removed for not being updated within the series TTL.", tree.Counter),
		filteredDesc: tree.NewDesc(ns+"events_filtered_total",
			"Conntrack flows the configured filters rejected.", tree.Counter),
		buckets: flow.DurationBuckets(),
	}
}

// update reads agg and adds its samples to b.
func (f *flowFamilies) update(ctx context.Context, agg *flow.Aggregator, b *tree.Builder) error {
	r, err := agg.Read(ctx)
	if err != nil {
		return err
	}
	for i := range r.Series {
		f.addSeries(b, &r.Series[i], r.Live)
	}
	for _, d := range r.Durations {
		hv := tree.HistogramValue{Count: d.Count, Sum: d.Sum, Buckets: make(map[float64]uint64, len(f.buckets))}
		for j, ub := range f.buckets {
			hv.Buckets[ub] = d.Buckets[j]
		}
		b.AddHistogram(f.duration, hv, d.Family, d.Proto)
	}
	self := func(leaf string) []string { return []string{"exporter", "conntrack", leaf} }
	b.Add(f.series, float64(r.Stats.Series), self("series"))
	b.Add(f.limit, float64(r.MaxSeries), self("series_limit"))
	b.Add(f.overflowEvents, float64(r.Stats.Overflowed), self("overflow_events"))
	b.Add(f.expired, float64(r.Stats.Expired), self("series_expired"))
	b.Add(f.filteredDesc, float64(r.Stats.Filtered), self("events_filtered"))
	return nil
}

// addSeries adds the samples of one series: five, plus the active flows with
// live accounting on. Paths read conntrack.<key values>.<leaf>.
func (f *flowFamilies) addSeries(b *tree.Builder, s *flow.Series, live bool) {
	n := f.keys
	vals := s.Values
	// One allocation for both label value lists: direction, then keys.
	lv := make([]string, 2*(n+1))
	orig, reply := lv[:n+1:n+1], lv[n+1:]
	orig[0], reply[0] = "orig", "reply"
	copy(orig[1:], vals)
	copy(reply[1:], vals)

	// One allocation for the paths.
	leaves := 9
	if live {
		leaves += 2 + 3*len(s.TCP)
	}
	pb := make([]string, 0, 6*(n+1)+leaves+3*len(s.TCP)*(n+1))
	path := func(leaf ...string) []string {
		start := len(pb)
		pb = append(pb, "conntrack")
		pb = append(pb, vals...)
		pb = append(pb, leaf...)
		return pb[start:len(pb):len(pb)]
	}
	b.Add(f.flows, float64(s.Flows), path("flows"), vals...)
	b.Add(f.packets, float64(s.OrigPackets), path("orig", "pkts"), orig...)
	b.Add(f.bytes, float64(s.OrigBytes), path("orig", "bytes"), orig...)
	b.Add(f.packets, float64(s.ReplyPackets), path("reply", "pkts"), reply...)
	b.Add(f.bytes, float64(s.ReplyBytes), path("reply", "bytes"), reply...)
	if !live {
		return
	}
	b.Add(f.active, float64(s.Active), path("active"), vals...)
	for _, c := range s.TCP {
		b.Add(f.tcpActive, float64(c.Flows), path("tcp_active", c.State), append(slices.Clone(vals), c.State)...)
	}
}
