// Package ctload fills a namespace's conntrack table, through ctnetlink or
// by sending a packet for each entry (CreateTraffic, whose entries carry
// counters), and flushes it, to make bursts of DESTROY events for tests
// and benchmarks.
package ctload
