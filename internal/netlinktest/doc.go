// Package netlinktest fakes the kernel's side of a netlink socket, so that
// the error paths of the project's netlink clients (nfacct, nftables) run
// without root: the kernel refuses a request, answers with a truncated or
// garbled message, or never answers.
//
// Requests are answered by a function, as with nltest.Dial, and nltest's
// helpers (nltest.Error, nltest.Multipart) build answers. Unlike nltest's,
// the client's socket is real: one end of a unix SOCK_SEQPACKET pair whose
// other end the fake kernel writes its answers to, one datagram each. So
// deadlines, cancellation and raw reads through syscall.Conn behave as on a
// netlink socket, and an answer can be any bytes. The answer is written as
// the request is sent, before the client reads: the time the function takes
// counts against the client's deadline.
package netlinktest
