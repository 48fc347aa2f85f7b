package collector

import (
	"context"
	"slices"
	"sync"

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

	// The families' descriptions with the Graphite leaf of each sample of
	// a series, whose samples then share one path.
	flowsLeaf, activeLeaf                            *tree.Desc
	origPackets, origBytes, replyPackets, replyBytes *tree.Desc
	tcpLeaf                                          map[string]*tree.Desc

	// cache keeps what the samples of each series share from one snapshot
	// to the next: label values (whose text the outputs render once) and
	// the Graphite path. Snapshots may be taken concurrently (a scrape and
	// the Graphite feed), hence mu.
	mu    sync.Mutex
	cache map[*string]*seriesShared
	gen   uint64
}

// seriesShared is what the samples of one series share.
type seriesShared struct {
	head               []string // conntrack, then the key values
	plain, orig, reply *tree.Labels
	tcp                map[string]*tree.Labels
	gen                uint64 // the latest snapshot that had the series
}

func newFlowFamilies(keys []flow.Key) *flowFamilies {
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = string(k)
	}
	dirLabels := append([]string{"direction"}, labels...)
	const ns = namespace + "_conntrack_"
	fams := &flowFamilies{
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
		cache:   make(map[*string]*seriesShared),
		tcpLeaf: make(map[string]*tree.Desc),
	}
	f := fams
	f.flowsLeaf = f.flows.WithLeaf("flows")
	f.activeLeaf = f.active.WithLeaf("active")
	f.origPackets = f.packets.WithLeaf("orig", "pkts")
	f.origBytes = f.bytes.WithLeaf("orig", "bytes")
	f.replyPackets = f.packets.WithLeaf("reply", "pkts")
	f.replyBytes = f.bytes.WithLeaf("reply", "bytes")
	return f
}

// update reads agg and adds its samples to b.
func (f *flowFamilies) update(ctx context.Context, agg *flow.Aggregator, b *tree.Builder) error {
	r, err := agg.Read(ctx)
	if err != nil {
		return err
	}
	perSeries := 5
	if r.Live {
		perSeries++
	}
	b.Grow(perSeries*len(r.Series) + len(r.Durations) + 5)
	f.mu.Lock()
	f.gen++
	for i := range r.Series {
		f.addSeries(b, &r.Series[i], r.Live)
	}
	// Forget the series that are gone.
	for k, sh := range f.cache {
		if sh.gen != f.gen {
			delete(f.cache, k)
		}
	}
	f.mu.Unlock()
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

// shared returns what the samples of series s share, made at its first
// snapshot. f.mu must be held.
func (f *flowFamilies) shared(s *flow.Series) *seriesShared {
	id := &s.Values[0] // the Aggregator keeps one Values per series
	sh := f.cache[id]
	if sh == nil {
		vals := s.Values
		withDir := func(dir string) *tree.Labels {
			return tree.NewLabels(append([]string{dir}, vals...)...)
		}
		sh = &seriesShared{
			head:  append([]string{"conntrack"}, vals...),
			plain: tree.NewLabels(vals...),
			orig:  withDir("orig"),
			reply: withDir("reply"),
		}
		f.cache[id] = sh
	}
	sh.gen = f.gen
	return sh
}

// addSeries adds the samples of one series: five, plus the active flows with
// live accounting on. Paths read conntrack.<key values>.<leaf>. f.mu must be
// held.
func (f *flowFamilies) addSeries(b *tree.Builder, s *flow.Series, live bool) {
	sh := f.shared(s)
	b.AddShared(f.flowsLeaf, float64(s.Flows), sh.head, sh.plain)
	b.AddShared(f.origPackets, float64(s.OrigPackets), sh.head, sh.orig)
	b.AddShared(f.origBytes, float64(s.OrigBytes), sh.head, sh.orig)
	b.AddShared(f.replyPackets, float64(s.ReplyPackets), sh.head, sh.reply)
	b.AddShared(f.replyBytes, float64(s.ReplyBytes), sh.head, sh.reply)
	if !live {
		return
	}
	b.AddShared(f.activeLeaf, float64(s.Active), sh.head, sh.plain)
	for _, c := range s.TCP {
		d := f.tcpLeaf[c.State]
		if d == nil {
			d = f.tcpActive.WithLeaf("tcp_active", c.State)
			f.tcpLeaf[c.State] = d
		}
		l := sh.tcp[c.State]
		if l == nil {
			if sh.tcp == nil {
				sh.tcp = make(map[string]*tree.Labels)
			}
			l = tree.NewLabels(append(slices.Clone(s.Values), c.State)...)
			sh.tcp[c.State] = l
		}
		b.AddShared(d, float64(c.Flows), sh.head, l)
	}
}
