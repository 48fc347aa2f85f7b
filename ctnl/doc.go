// Package ctnl is a client for ctnetlink, the Linux conntrack netlink
// interface, made for accounting at kernel speed.
//
// A Listener joins the conntrack DESTROY multicast group with its own raw
// netlink socket and receive loop: a large receive buffer, an io_uring
// multishot receive into a ring of provided buffers (no system call per
// event while events keep coming) or, where io_uring is not allowed, many
// events per recvmmsg call, a decoder that does not allocate, and exact loss
// accounting from the socket's own drop counter. An overrun is counted and
// the loop goes on. Client.TableStats reads the table's global and per-CPU
// statistics; after a failed request the Client replaces its socket, so
// that an answer arriving late is never read as the next one's. ReadSysctl
// and WriteSysctl read and set nf_conntrack_acct, nf_conntrack_timestamp
// and nf_conntrack_events in a namespace.
//
// The package knows nothing of Prometheus or of aggregation.
package ctnl
