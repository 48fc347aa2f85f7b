// Package nlwire splits netlink datagrams into messages and messages into
// attributes, in place and without allocating, for the project's own
// decoders of ctnetlink (ctnl) and nf_tables (nftables) answers. It knows
// the framing only: what a message or an attribute means is its caller's.
package nlwire
