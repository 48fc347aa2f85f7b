// Package collector turns netfilter state into the metric tree.
//
// Each Collector reads one part of netfilter through a narrow interface to a
// kernel client, or the readings of conntrack accounting (package flow), and
// adds samples to a tree.Builder; it drives no kernel protocol. A Set runs its collectors
// concurrently, isolates their failures and panics, times them, and returns
// one tree.Snapshot; the /metrics handler (package prometheus) and the
// Graphite writer both read snapshots from it, never the kernel.
package collector
