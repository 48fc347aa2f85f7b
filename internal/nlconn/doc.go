// Package nlconn keeps the request socket of a kernel client (nfacct,
// nftables, ctnl's statistics): the one socket lifecycle they share.
//
// A Conn dials its socket when it is made and again, lazily, after a
// request failed; it bounds each request by a timeout and a context; it
// drops the socket after a failed request, whose answer, or the rest of it,
// may still arrive and would be read as the next request's; and it closes
// once, after which every request fails with the client's own error.
// Requests are serialised.
package nlconn
