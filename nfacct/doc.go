// Package nfacct is a client for nfnetlink_acct, the Linux kernel's extended
// accounting objects (the ones the nfacct(8) tool manages and iptables' nfacct
// match updates).
//
// It speaks netlink directly through github.com/ti-mo/netfilter, needs no C
// library and knows nothing of Prometheus or Graphite. It dumps objects with
// their counters, quota and flags, creates and deletes objects, and listens for
// over-quota notifications. It never uses the kernel's read-and-reset request,
// so reading never zeroes a counter another reader relies on.
//
// A Conn whose request failed (a timeout, a cancelled context, an error)
// replaces its socket before the next request, so that a late answer is
// never read as the next one's.
//
// A single-object GET is answered by the kernel with a multi-part reply; List
// therefore always dumps the whole table and callers filter by name.
package nfacct
