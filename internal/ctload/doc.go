// Package ctload fills a namespace's conntrack table through ctnetlink and
// flushes it, to make bursts of DESTROY events for tests and benchmarks.
package ctload
