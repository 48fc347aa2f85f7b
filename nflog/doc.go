// Package nflog is a client for nfnetlink_log, the Linux kernel's packet
// logging over netlink: what nft `log group N` statements and iptables
// `-j NFLOG --nflog-group N` rules send. It knows nothing of Prometheus or
// Graphite and returns plain Go values.
//
// # Listening
//
// Listen opens a raw netlink socket in the configured namespace and binds
// the groups it is given (NFULNL_CFG_CMD_BIND, one request per group). Each
// group copies only the first Config.CopyRange bytes of a packet, enough for
// its IP and transport headers, and numbers its messages (NFULNL_CFG_F_SEQ
// and NFULNL_CFG_F_SEQ_GLOBAL). The socket has a large receive buffer set
// with SO_RCVBUFFORCE, doubled after a loss up to Config.MaxReadBuffer, and
// NETLINK_NO_ENOBUFS.
//
// Listener.Run waits for datagrams in Go's network poller (the socket is
// non-blocking once bound: a goroutine blocked in recvfrom keeps the
// runtime's sysmon thread waking every 20us, which cost more than the
// decoding), and decodes their messages in place, without allocating,
// into Packet values: the group, the family, the rule's prefix, hook,
// mark, interfaces, sequence numbers and, from the copied headers, the IP
// total length, protocol, addresses and ports. The sequence numbers are
// accounted as each packet is decoded. The messages of one rule come in
// runs of one shape (the same attributes, of the same lengths but for the
// payload, which is last): the decoder remembers where the last message's
// attributes were and, when the next one's attribute headers are the same
// at the same offsets, reads its fields from there instead of walking over
// its attributes one after the other (about half the cost of a message).
// Any other message is walked, and its layout remembered.
//
// # Loss
//
// The kernel numbers the messages of each group from 0 at the bind. A gap
// in those numbers is exactly the number of packets the kernel logged but
// could not queue on the socket, so GroupStats.Received plus
// GroupStats.Lost equals what the group's rules logged, up to the last
// message received: a loss at the very end of a burst shows once the next
// message of the group arrives.
//
// # Conntrack's invalid packets
//
// Conntrack logs the packets it finds invalid through the family's logger:
// with nfnetlink_log, to group InvalidGroup (0), with a prefix such as
// "nf_ct_proto_6: invalid tcp flag combination ". EnableInvalidLogging sets
// the namespace's IPv4 and IPv6 loggers to nfnetlink_log and
// nf_conntrack_log_invalid to 255, returning what it changed for
// RestoreSysctls (the loggers outlive the socket); InvalidReason turns a
// prefix into a bounded reason. The hook of these messages is always 0: the
// direction is known from the interfaces only.
//
// # Errors
//
// A group bound by another socket (ulogd2, another exporter) cannot be bound
// again: the kernel answers EPERM, and Listen returns an error that wraps
// syscall.EPERM and names the group and, read from
// /proc/net/netfilter/nfnetlink_log and /proc/net/netlink of the
// namespace, the holder's netlink port and process.
package nflog
