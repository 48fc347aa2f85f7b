// Package nftables reads the named counters and quotas of nf_tables, and
// optionally the anonymous counters of its rules, from the Linux kernel over
// netlink.
//
// It knows nothing of Prometheus or Graphite and needs no C library. A read is
// one NFT_MSG_GETOBJ (or NFT_MSG_GETRULE) dump of every table of every
// family, in the network namespace the Conn was dialled in; it never sends
// the reset variants of those requests, so reading never zeroes a counter
// or a quota that rules or other readers rely on.
//
// The decoder reads only what it returns: a table's objects that are neither
// counters nor quotas, and the expressions of a rule other than its first
// counter, are skipped without being decoded. Reading a counter costs one
// allocation, its name; table and chain names are shared (see
// BENCHMARKS.md). A dump that the kernel flags as interrupted by a change of
// the ruleset is started again, as often as its deadline allows; a dump cut
// short (by its deadline, or a malformed datagram) drops the
// socket, and the next request dials a new one in the same namespace.
package nftables
