// Package tree holds the metric tree that every collector of
// netfilter_exporter produces and that every reader consumes.
//
// A Snapshot is one consistent reading of all collectors at one instant. Each
// Sample in it carries two views of the same value: a Prometheus view (a
// metric family described by a Desc, plus label values) and a Graphite view
// (a Path of hierarchy elements below the configured prefix). Readers never
// call the kernel; they turn a Snapshot into their own output format, so
// /metrics and the Graphite feed always agree.
//
// Reading a large tree is cheap when collectors share what does not change:
// a Labels holds the label values of a series for as long as it lives, and
// the Prometheus output renders their text once; a Desc's Leaf ends the
// Graphite path of its samples, so the samples of one series share one
// Path (read the whole path with Sample.GraphitePath). A Builder keeps its
// samples in pooled blocks, so building a tree of 500,000 samples copies
// nothing it already holds.
package tree
