// Package graphite feeds the metric tree of netfilter_exporter to Graphite
// over carbon's plaintext protocol, one "path value timestamp" line per point.
//
// A Writer takes a tree.Snapshot from its Source every Config.Interval, turns
// every counter and gauge sample that has a Path into one line and queues the
// lines. Taking snapshots never waits for the network: a single sender
// goroutine keeps one persistent TCP connection to carbon and writes the
// queued lines to it, in order and with their original timestamps.
//
// Plaintext carbon sends no acknowledgement, so the Writer asks its own
// kernel (SIOCOUTQ) how much of what it wrote carbon's kernel has
// acknowledged. Only acknowledged lines count as sent and leave the backlog;
// the backlog is bounded (Config.BacklogPoints, Config.BacklogBytes), and
// when a push exceeds it the oldest lines not in flight are dropped and
// counted. Acknowledged lines are then kept for Config.ResendWindow (within
// Config.ResendWindowBytes): when a connection ends in failure, the lines of
// that window are written again on the next connection, before what was not
// acknowledged. Carbon stores a point sent twice once, the second value
// replacing the first, so a resend restores what a carbon-cache that died
// held in memory, or an acknowledged line it never read. A carbon-aggregator
// that sums the points it receives would count them twice: turn resends off
// for it.
//
// The queued lines live in chunks of memory mapped outside the Go heap (see
// chunk and allocChunk), so that a large backlog neither raises the garbage
// collector's target nor lingers once freed. Each chunk of a snapshot is
// queued as soon as it is filled, so a large snapshot is written while the
// rest of it is formatted. The chunks of the resend window are kept
// compressed.
//
// When its context ends, a Writer takes one last snapshot and delivers it,
// with whatever is still queued, within Config.Timeout.
//
// Each element of a Sample.Path is one level of the Graphite hierarchy. An
// element keeps the bytes carbon stores as they are and graphite-web queries
// literally and that carbon-c-relay passes by default (A-Z a-z 0-9 and
// # - : _), so that a name
// such as web:8080 reaches carbon as ulogd2 sends it; every other byte is
// written %XX, '%' itself included, and an empty element is "%". A value
// such as an IP address or a rule comment can never add levels, and the
// mapping is injective: two different lists of elements never give one
// path. Tag values are escaped the same way, with fewer bytes to escape
// (';', '%', a leading '~', whitespace, control and non-ASCII bytes). As a
// backstop, when two samples of one snapshot still have the same path (a
// collector's mistake), the first is sent, the others are left out, logged
// once and counted.
//
// In Delta mode counters are sent as the increase since the previous snapshot
// instead of their running total; gauges are always sent as they are.
// Histograms and samples without a Path are never sent to Graphite.
//
// The Writer reports on itself through Prometheus metrics named
// netfilter_exporter_graphite_*, and through Stats.
package graphite
