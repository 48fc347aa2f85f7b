// Package ctnl is a client for ctnetlink, the Linux conntrack netlink
// interface, made for accounting at kernel speed. It has three clients, each
// with its own socket in the namespace it is given, and knows nothing of
// Prometheus or of aggregation.
//
// Each client is opened the same way, with a pointer to its configuration
// (nil for the defaults): Dial(*Config) opens a Conn for requests,
// Listen(*ListenConfig) a Listener for events (as net.Listen does), and
// DialDumper(*DumpConfig) a Dumper for table dumps. Each has its own socket
// and a Close that may be called more than once.
//
// A Listener (Listen, Run) joins the conntrack DESTROY multicast group with
// its own raw netlink socket and receive loop: a large receive buffer, an
// io_uring multishot receive into a ring of provided buffers (no system call
// per event while events keep coming) or, where io_uring is not allowed,
// many events per recvmmsg call, a decoder that does not allocate, and
// exact loss accounting from the socket's own drop counter (SO_MEMINFO).
// An overrun is counted and the loop goes on; after drops the receive
// buffer doubles, up to ListenConfig.MaxReadBuffer.
//
// A Dumper (DialDumper) reads the table itself, for live accounting of flows
// that are still running: Dumper.Dump reads the whole table, or what a
// DumpFilter lets the kernel send, and Dumper.Lookup asks for one entry by
// its original tuple. ThreadCPU measures what a dump cost its thread.
//
// A Conn (Dial) reads the table's global and per-CPU statistics with
// Conn.TableStats; after a failed request it replaces its socket, so that
// an answer arriving late is never read as the next one's.
//
// AccountingSettings reads, and with enable sets, the sysctls accounting
// depends on (nf_conntrack_acct, nf_conntrack_timestamp and
// nf_conntrack_events) in a namespace.
package ctnl
