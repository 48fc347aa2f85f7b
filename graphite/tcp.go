package graphite

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// errPeerClosed reports that carbon closed the connection.
var errPeerClosed = errors.New("connection closed by peer")

// unackedBytes returns how many of the bytes written to the TCP socket c the
// peer's kernel has not acknowledged yet (SIOCOUTQ). Bytes it acknowledged
// are in the peer's socket buffer or beyond; the others may still be lost
// with the connection.
func unackedBytes(c syscall.RawConn) (int, error) {
	var n int
	var ierr error
	if err := c.Control(func(fd uintptr) {
		n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	}); err != nil {
		return 0, err
	}
	return n, ierr
}

// probeConn checks, without waiting, whether the peer of the TCP socket c
// has closed or reset the connection. Carbon never sends anything: whatever
// it did send is read and ignored; a read that would block means the
// connection is up, end of file that carbon closed it.
func probeConn(c syscall.RawConn) error {
	var perr error
	if err := c.Control(func(fd uintptr) {
		var b [512]byte
		for {
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_DONTWAIT)
			switch {
			case errors.Is(err, unix.EAGAIN):
				return
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				perr = err
				return
			case n == 0:
				perr = errPeerClosed
				return
			}
		}
	}); err != nil {
		return err
	}
	return perr
}
