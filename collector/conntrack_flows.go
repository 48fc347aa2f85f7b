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

	// The series are read into two tables. series has a row per series
	// and a column per sample: flows, packets and bytes per direction,
	// and with live accounting the active flows; each column's Desc
	// carries the Graphite leaf, and the direction is a fixed label. tcp
	// has a row per TCP state a series has had. names are the key
	// names; prefix starts every path.
	columns, liveColumns []tree.Column
	names, prefix        []string

	// What the snapshots of the series share, kept from one snapshot to
	// the next. Snapshots may be taken concurrently (a scrape and the
	// Graphite feed), hence mu.
	mu      sync.Mutex
	reading flow.Reading
	// shared holds, by series ID, what the samples of a series share.
	shared []seriesShared
	// rows are the rows of the series table for the Reading layout
	// rowsLayout; tcpRows those of the TCP table, for tcpLayout and
	// tcpPairs (a series' TCP states are only ever added to).
	rows                  []tree.Row
	rowsLayout, tcpLayout uint64
	tcpRows               []tree.Row
	tcpPairs              int
	haveRows, haveTCP     bool
	gen                   uint64
}

// seriesShared is what the samples of one series share: its label values
// (whose text outputs render once) and those of its TCP states, with their
// Graphite paths.
type seriesShared struct {
	labels *tree.Labels
	tcp    map[string]tcpShared
	gen    uint64 // the latest layout that had the series
}

// tcpShared is what the sample of one TCP state of a series keeps.
type tcpShared struct {
	labels *tree.Labels
	path   []string
}

func newFlowFamilies(keys []flow.Key) *flowFamilies {
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = string(k)
	}
	dirLabels := append([]string{"direction"}, labels...)
	const ns = namespace + "_conntrack_"
	f := &flowFamilies{
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
		names:   labels,
		prefix:  []string{"conntrack"},
	}
	f.columns = []tree.Column{
		{Desc: f.flows.WithLeaf("flows")},
		{Desc: f.packets.WithLeaf("orig", "pkts"), Fixed: []string{"orig"}},
		{Desc: f.bytes.WithLeaf("orig", "bytes"), Fixed: []string{"orig"}},
		{Desc: f.packets.WithLeaf("reply", "pkts"), Fixed: []string{"reply"}},
		{Desc: f.bytes.WithLeaf("reply", "bytes"), Fixed: []string{"reply"}},
	}
	f.liveColumns = append(slices.Clip(f.columns), tree.Column{Desc: f.active.WithLeaf("active")})
	return f
}

// update reads src and adds its samples to b: the series in tables, then
// the duration histograms and the aggregation's counts.
func (f *flowFamilies) update(ctx context.Context, src ConntrackSource, b *tree.Builder) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &f.reading
	if err := src.Read(ctx, r); err != nil {
		return err
	}
	cols := f.columns
	if r.Live {
		cols = f.liveColumns
	}
	if !f.haveRows || r.Layout != f.rowsLayout {
		f.newRows(r)
	}
	values := make([]float64, len(r.Series)*len(cols))
	for i := range r.Series {
		s := &r.Series[i]
		v := values[i*len(cols) : (i+1)*len(cols)]
		v[0], v[1], v[2], v[3], v[4] = float64(s.Flows), float64(s.OrigPackets), float64(s.OrigBytes), float64(s.ReplyPackets), float64(s.ReplyBytes)
		if r.Live {
			v[5] = float64(s.Active)
		}
	}
	b.AddTable(&tree.Table{Columns: cols, Names: f.names, Prefix: f.prefix, Rows: f.rows, Values: values})
	if r.Live {
		f.addTCP(b, r)
	}

	b.Grow(len(r.Durations) + 5)
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

// newRows makes the rows of the series table for the series of r, and
// forgets what was kept of the series that are gone. The rows of earlier
// snapshots are left as they are: those snapshots may still be read.
// f.mu must be held.
func (f *flowFamilies) newRows(r *flow.Reading) {
	f.gen++
	rows := make([]tree.Row, len(r.Series))
	for i := range r.Series {
		s := &r.Series[i]
		sh := f.sharedOf(s)
		sh.gen = f.gen
		// The key values are the Aggregator's, kept for the life of
		// the series: the row's path after the prefix, and its labels.
		rows[i] = tree.Row{Labels: sh.labels, Path: s.Values}
	}
	for i := range f.shared {
		if f.shared[i].gen != f.gen {
			f.shared[i] = seriesShared{}
		}
	}
	f.rows, f.rowsLayout, f.haveRows = rows, r.Layout, true
}

// sharedOf returns what is kept of series s, made at its first snapshot.
// f.mu must be held.
func (f *flowFamilies) sharedOf(s *flow.Series) *seriesShared {
	if int(s.ID) >= len(f.shared) {
		f.shared = slices.Grow(f.shared, int(s.ID)+1-len(f.shared))[:int(s.ID)+1]
	}
	sh := &f.shared[s.ID]
	// An ID goes to a new series once its series is removed: the key
	// values, which the Aggregator makes once per series, tell them
	// apart.
	if sh.labels == nil || &sh.labels.Values()[0] != &s.Values[0] {
		*sh = seriesShared{labels: tree.NewLabels(s.Values...)}
	}
	return sh
}

// addTCP adds the table of the active TCP flows by state: one row per
// state each series has had, whose path reads
// conntrack.<key values>.tcp_active.<state>. f.mu must be held.
func (f *flowFamilies) addTCP(b *tree.Builder, r *flow.Reading) {
	pairs := 0
	for i := range r.Series {
		pairs += len(r.Series[i].TCP)
	}
	if pairs == 0 {
		return
	}
	if !f.haveTCP || f.tcpLayout != r.Layout || f.tcpPairs != pairs {
		rows := make([]tree.Row, 0, pairs)
		for i := range r.Series {
			s := &r.Series[i]
			if len(s.TCP) == 0 {
				continue
			}
			sh := f.sharedOf(s)
			for _, c := range s.TCP {
				ts, ok := sh.tcp[c.State]
				if !ok {
					if sh.tcp == nil {
						sh.tcp = make(map[string]tcpShared)
					}
					ts = tcpShared{
						labels: tree.NewLabels(append(slices.Clone(s.Values), c.State)...),
						path:   append(slices.Clone(s.Values), "tcp_active", c.State),
					}
					sh.tcp[c.State] = ts
				}
				rows = append(rows, tree.Row{Labels: ts.labels, Path: ts.path})
			}
		}
		f.tcpRows, f.tcpLayout, f.tcpPairs, f.haveTCP = rows, r.Layout, pairs, true
	}
	values := make([]float64, 0, pairs)
	for i := range r.Series {
		for _, c := range r.Series[i].TCP {
			values = append(values, float64(c.Flows))
		}
	}
	b.AddTable(&tree.Table{Columns: []tree.Column{{Desc: f.tcpActive}}, Names: f.tcpActive.Labels, Prefix: f.prefix, Rows: f.tcpRows, Values: values})
}
