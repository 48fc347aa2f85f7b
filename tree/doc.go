// Package tree holds the metric tree that every collector of
// netfilter_exporter produces and that every reader consumes.
//
// A Snapshot is one consistent reading of all collectors at one instant. Each
// Sample in it carries two views of the same value: a Prometheus view (a
// metric family described by a Desc, plus label values) and a Graphite view
// (a Path of hierarchy elements below the configured prefix). Readers never
// call the kernel; they turn a Snapshot into their own output format, so
// /metrics and the Graphite feed always agree.
package tree
