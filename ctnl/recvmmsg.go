package ctnl

// Receiving with recvmmsg(2), where io_uring is not allowed or not asked for.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// runRecvmmsg receives with recvmmsg: up to a batch of datagrams per call,
// blocking for the first one only, and after a call that did not fill a
// batch it waits the linger time for events to gather.
func (l *Listener) runRecvmmsg(ctx context.Context, fn func([]Flow)) error {
	if l.msgs == nil {
		l.bufs = make([]byte, l.batch*slotSize)
		l.iovs = make([]unix.Iovec, l.batch)
		l.msgs = make([]mmsghdr, l.batch)
		for i := range l.msgs {
			l.iovs[i].Base = &l.bufs[i*slotSize]
			l.iovs[i].SetLen(slotSize)
			l.msgs[i].hdr.Iov = &l.iovs[i]
			l.msgs[i].hdr.SetIovlen(1)
		}
	}
	var linger *time.Timer
	for ctx.Err() == nil {
		if l.closed.Load() {
			return errListenerClosed
		}
		t0 := time.Now()
		n, err := l.recv()
		switch {
		case err == nil:
			l.grow(false)
		case errors.Is(err, unix.EAGAIN):
			l.drained.Store(t0.UnixNano())
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			l.overruns.Add(1)
			l.grow(true)
			continue
		default:
			if l.closed.Load() {
				// Closed while receiving: the socket's error says
				// no more than that.
				return errListenerClosed
			}
			return fmt.Errorf("receiving conntrack events: %w", err)
		}
		l.flows = l.flows[:0]
		for i := 0; i < n; i++ {
			m := &l.msgs[i]
			if m.hdr.Flags&unix.MSG_TRUNC != 0 {
				l.decodeErrors.Add(1)
				continue
			}
			l.decodeDatagram(l.bufs[i*slotSize : i*slotSize+int(m.len)])
		}
		l.deliver(fn)
		if n < len(l.msgs) {
			// The socket was emptied: every event queued before t0
			// has been handed to fn.
			l.drained.Store(t0.UnixNano())
		}
		if n < len(l.msgs) && l.linger > 0 {
			if linger == nil {
				linger = time.NewTimer(l.linger)
				defer linger.Stop()
			} else {
				linger.Reset(l.linger)
			}
			select {
			case <-ctx.Done():
			case <-linger.C:
			}
		}
	}
	return nil
}

// recv fills up to l.batch datagrams with one recvmmsg call, blocking for
// the first one only.
func (l *Listener) recv() (int, error) {
	for i := range l.msgs {
		l.msgs[i].hdr.Flags = 0
		l.msgs[i].len = 0
	}
	return l.sock.recvmmsg(l.msgs)
}
