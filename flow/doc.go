// Package flow is conntrack accounting: it sums conntrack flows into a
// bounded set of series, and follows each flow from one table dump to the
// next so that it is counted while it runs.
//
// A Pipeline owns the whole of it. New makes one from a Config; Open gives
// it the kernel clients of a network namespace (a ctnl.Listener of DESTROY
// events and, with live accounting, a ctnl.Dumper), after checking the
// sysctls accounting needs there; Run receives the events, retrying after
// the listener fails, and dumps the table on an interval that adapts to the
// table's size. Opening it in another namespace closes out the flows of the
// previous one; the series and their sums stay. Read and Stats serve
// scrapes. Reconfigure swaps the networks, ports and filters of a reloaded
// configuration file while it counts (reload.go): the series whose keys read
// the same continue, the others are removed, the flows followed keep their
// baseline, and the listener's kernel filter is replaced.
//
// Its aggregation keys what a flow moved by the values of the Keys the user
// groups by (family, proto, dport by default), after mapping addresses to
// named Networks and ports to a Ports list, and drops flows a Filter
// rejects. It holds at most Config.MaxSeries series; key combinations past
// that limit are summed into one overflow series whose every key reads
// "other", so totals stay exact.
//
// Without live accounting, each DESTROY event counts its flow's whole
// counters when it ends. With Config.Live, dumps of the table add what every
// flow moved since the previous dump, and its DESTROY event only the rest.
// Flows are kept in a table of their own, keyed by zone, family, original
// tuple, the kernel's id and start time; ended flows stay as tombstones
// until no dump can list them any more, so that nothing is counted twice,
// and flows that leave the table without a DESTROY event are closed out from
// the dumps. Counters that go down (another tool zeroed them) are detected
// and counted; nothing is ever zeroed. Flows arrive as ctnl decodes them
// (ctnl.Flow), with no copy in between.
//
// Read returns a copy of the series, duration histograms and counts as plain
// data: the package knows nothing of metric names, help texts or Graphite
// paths, which belong to the collector that serves them.
//
// The methods are safe for concurrent use: the event listener, the dumps and
// scrapes each run in their own goroutine. Events, dumps, Add and AddBatch
// do not allocate for flows and series already known.
package flow
