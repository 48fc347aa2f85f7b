package collector

import (
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// liveFamilies are the metric families of live accounting: its dumps and
// the flows it follows.
type liveFamilies struct {
	dumps, errs *tree.Desc
	duration    *tree.Desc
	cpu         *tree.Desc
	dumped      *tree.Desc
	filtered    *tree.Desc
	interval    *tree.Desc
	lookups     *tree.Desc
	tracked     *tree.Desc
	tombstones  *tree.Desc
	resets      *tree.Desc
	closedOut   *tree.Desc
	late        *tree.Desc
	tableBytes  *tree.Desc
}

func newLiveFamilies() *liveFamilies {
	const ns = namespace + "_conntrack_"
	return &liveFamilies{
		dumps: tree.NewDesc(ns+"dumps_total",
			"Conntrack table dumps finished for live accounting.", tree.Counter),
		errs: tree.NewDesc(ns+"dump_errors_total",
			"Conntrack table dumps that failed.", tree.Counter),
		duration: tree.NewDesc(ns+"dump_duration_seconds",
			"Wall time of the latest conntrack table dump.", tree.Gauge),
		cpu: tree.NewDesc(ns+"dump_cpu_seconds_total",
			"Processor time of conntrack table dumps and lookups, kernel and exporter together.", tree.Counter),
		dumped: tree.NewDesc(ns+"dump_entries",
			"Entries the latest conntrack table dump listed that the filters accept.", tree.Gauge),
		filtered: tree.NewDesc(ns+"dump_entries_filtered_total",
			"Entries conntrack table dumps listed that the configured filters rejected, counted at every dump that listed them.", tree.Counter),
		interval: tree.NewDesc(ns+"poll_interval_seconds",
			"Time between the starts of two conntrack table dumps, as set or as adapted to the table.", tree.Gauge),
		lookups: tree.NewDesc(ns+"flow_lookups_total",
			"Flows a dump missed that were asked for one by one.", tree.Counter),
		tracked: tree.NewDesc(ns+"flows_tracked",
			"Conntrack flows followed from dump to dump by live accounting.", tree.Gauge),
		tombstones: tree.NewDesc(ns+"flow_tombstones",
			"Ended flows kept until a later dump has finished, so that none is counted twice.", tree.Gauge),
		resets: tree.NewDesc(ns+"flow_resets_total",
			"Flows whose counters went down between two readings: another tool zeroed them (conntrack -L -z) or a new flow took an old one's identity.", tree.Counter),
		closedOut: tree.NewDesc(ns+"flows_closed_out_total",
			"Flows that left the table without a DESTROY event reaching the exporter, counted as ended from the dumps.", tree.Counter),
		late: tree.NewDesc(ns+"late_destroy_events_total",
			"DESTROY events of flows already closed out; only their rest was added.", tree.Counter),
		tableBytes: tree.NewDesc(ns+"flow_table_bytes",
			"Memory of the table of flows followed by live accounting, tombstones included.", tree.Gauge),
	}
}

// add adds the live accounting samples of st to b.
func (f *liveFamilies) add(b *tree.Builder, st *flow.Stats) {
	path := func(leaf string) []string { return []string{"exporter", "conntrack", leaf} }
	ps, ls := &st.Poll, &st.Flows
	b.Add(f.dumps, float64(ls.Dumps), path("dumps"))
	b.Add(f.errs, float64(ps.Errors), path("dump_errors"))
	b.Add(f.cpu, ps.CPU.Seconds(), path("dump_cpu_seconds"))
	b.Add(f.lookups, float64(ps.Lookups), path("flow_lookups"))
	b.Add(f.filtered, float64(ls.Filtered), path("dump_entries_filtered"))
	if ps.Dumped {
		b.Add(f.duration, ps.Last.Duration.Seconds(), path("dump_duration_seconds"))
		b.Add(f.dumped, float64(ls.Entries), path("dump_entries"))
		b.Add(f.interval, ps.Interval.Seconds(), path("poll_interval_seconds"))
	}
	b.Add(f.tracked, float64(ls.Tracked), path("flows_tracked"))
	b.Add(f.tombstones, float64(ls.Tombstones), path("flow_tombstones"))
	b.Add(f.resets, float64(ls.Resets), path("flow_resets"))
	b.Add(f.closedOut, float64(ls.ClosedOut), path("flows_closed_out"))
	b.Add(f.late, float64(ls.LateDestroys), path("late_destroy_events"))
	b.Add(f.tableBytes, float64(ls.TableBytes), path("flow_table_bytes"))
}
