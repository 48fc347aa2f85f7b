// Package graphite feeds the metric tree of netfilter_exporter to Graphite
// over carbon's plaintext protocol, one "path value timestamp" line per point.
//
// A Writer takes a tree.Snapshot from its Source every Config.Interval, turns
// every counter and gauge sample that has a Path into one line and appends the
// lines to a bounded in-memory backlog. Taking snapshots never waits for the
// network: a single sender goroutine keeps one persistent TCP connection to
// carbon and writes the backlog to it in batches, removing lines only once
// their write has succeeded. While carbon is unreachable the lines stay queued
// and are replayed later, in their original order and with their original
// timestamps; when the backlog is full the oldest lines are dropped and
// counted.
//
// Each element of a Sample.Path is one level of the Graphite hierarchy. Every
// character Graphite cannot take in a path element (anything outside
// [A-Za-z0-9_-]) is replaced by the configured escape character, so a value
// such as an IPv6 address or a rule comment can never add levels.
//
// In Delta mode counters are sent as the increase since the previous snapshot
// instead of their running total; gauges are always sent as they are.
// Histograms and samples without a Path are never sent to Graphite.
//
// The Writer reports on itself through Prometheus metrics named
// netfilter_exporter_graphite_*, and through Stats.
package graphite
