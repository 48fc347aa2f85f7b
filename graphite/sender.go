package graphite

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

const (
	// minBackoff and maxBackoff bound the wait between two attempts to reach
	// carbon. The wait doubles after every failure and is reset by a
	// successful write.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// minAckPoll and maxAckPoll bound the wait between two readings of the
	// bytes carbon's kernel has not acknowledged, while there are some and
	// nothing is left to write. The wait doubles while nothing changes.
	minAckPoll = 5 * time.Millisecond
	maxAckPoll = time.Second
)

// errNotTCP reports a connection that is not a TCP socket.
var errNotTCP = errors.New("not a TCP connection")

// send is the sender goroutine. It writes the queued lines to carbon, waits
// for carbon's kernel to acknowledge them, and reconnects with backoff after
// failures, until ctx is done. Once draining is closed it returns as soon as
// every line has been acknowledged.
func (w *Writer) send(ctx context.Context, draining <-chan struct{}) {
	poll := minAckPoll
	for ctx.Err() == nil {
		if w.conn == nil {
			if w.q.empty() {
				if w.idle(ctx, draining) {
					return
				}
				continue
			}
			if err := w.dial(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				if w.stalled {
					// Carbon stalled, and now cannot be reached: it
					// may have died with what it acknowledged.
					w.q.replay(time.Now())
					w.stalled = false
				}
				w.connectErrors.Add(1)
				w.fail("cannot connect to carbon", err)
				w.sleep(ctx)
				continue
			}
		}
		if data := w.q.take(); data != nil {
			if err := w.probe(); err != nil {
				w.lost(ctx, "carbon closed the connection", err)
				continue
			}
			err := w.write(ctx, data)
			w.pollAcks()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.lost(ctx, "cannot write to carbon", err)
				continue
			}
			w.succeeded()
			poll = minAckPoll
			continue
		}
		// Everything is written: wait for the acknowledgements, or for
		// new lines.
		w.pollAcks()
		if w.q.empty() {
			if w.idle(ctx, draining) {
				return
			}
			continue
		}
		t := time.NewTimer(poll)
		select {
		case <-w.q.ready:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		poll = min(2*poll, maxAckPoll)
		if err := w.probe(); err != nil {
			w.lost(ctx, "carbon closed the connection", err)
		}
	}
}

// idle waits, with every line acknowledged, for new lines. It reports
// whether the sender is done: draining is closed and nothing is left.
func (w *Writer) idle(ctx context.Context, draining <-chan struct{}) bool {
	select {
	case <-draining:
		return true
	default:
	}
	select {
	case <-w.q.ready:
	case <-draining:
	case <-ctx.Done():
	}
	return false
}

// dial opens the connection to carbon. The connection's I/O is aborted when
// ctx is done, so that the final flush of Run never outlasts Timeout.
func (w *Writer) dial(ctx context.Context) error {
	conn, err := w.dialer.DialContext(ctx, "tcp", w.cfg.Address)
	if err != nil {
		return err
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		_ = conn.Close()
		return errNotTCP
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		_ = conn.Close()
		return err
	}
	w.conn, w.raw = conn, raw
	w.written, w.acked = 0, 0
	w.stalled = false
	w.stopAbort = context.AfterFunc(ctx, func() {
		_ = conn.SetDeadline(time.Unix(1, 0))
	})
	w.connected.Store(true)
	w.log.Debug("connected to carbon", "local", conn.LocalAddr().String())
	return nil
}

// closeConn closes the connection, if any.
func (w *Writer) closeConn() {
	if w.conn == nil {
		return
	}
	w.stopAbort()
	_ = w.conn.Close()
	w.conn, w.raw = nil, nil
	w.connected.Store(false)
}

// probe checks, before writing to a connection that may have been idle,
// that carbon has not closed it. Without the check the next lines would be
// written into a dead socket.
func (w *Writer) probe() error {
	return probeConn(w.raw)
}

// write writes data to the connection. It fails with
// os.ErrDeadlineExceeded when carbon's kernel acknowledges nothing for
// Timeout: carbon stalled. A carbon that is only slow, and acknowledges
// something in every Timeout, is waited for.
func (w *Writer) write(ctx context.Context, data []byte) error {
	for {
		err := w.conn.SetWriteDeadline(time.Now().Add(w.cfg.Timeout))
		if err == nil {
			// Checked after the deadline is set: once ctx is done, its
			// AfterFunc has set or will set a past deadline that this
			// write cannot override.
			err = ctx.Err()
		}
		if err != nil {
			return err
		}
		w.pollAcks()
		before := w.acked
		n, err := w.conn.Write(data)
		w.written += int64(n)
		data = data[n:]
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
			return err
		}
		if w.pollAcks(); w.acked == before {
			return err
		}
	}
}

// pollAcks asks the kernel how many of the bytes written are still not
// acknowledged by carbon's, and settles the lines acknowledged since the
// last time.
func (w *Writer) pollAcks() {
	unacked, err := unackedBytes(w.raw)
	if err != nil {
		return
	}
	if acked := w.written - int64(unacked); acked > w.acked {
		w.q.ack(int(acked-w.acked), time.Now())
		w.acked = acked
	}
}

// lost handles a connection that ended in failure: what carbon's kernel
// acknowledged is settled, the connection closed, and everything not
// acknowledged will be written again on the next one.
//
// When carbon closed or reset the connection, what it acknowledged may be
// lost with it: the resend window is written first. When a write timed out,
// carbon is up but took nothing for Timeout: the connection is closed with a
// reset, which drops what its kernel did not acknowledge and leaves it what
// it did, to read when it wakes up, so that nothing is sent twice; the
// window is written again only if carbon then cannot be reached.
func (w *Writer) lost(ctx context.Context, msg string, err error) {
	w.pollAcks()
	w.writeErrors.Add(1)
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	if tcp, ok := w.conn.(*net.TCPConn); ok && timedOut {
		_ = tcp.SetLinger(0)
	}
	w.closeConn()
	now := time.Now()
	w.q.rewind(now)
	if timedOut {
		w.stalled = true
	} else {
		w.q.replay(now)
	}
	w.fail(msg, err)
	w.sleep(ctx)
}

// succeeded records a successful write and ends the outage, if any.
func (w *Writer) succeeded() {
	w.lastSend.Store(time.Now().UnixNano())
	w.backoff = minBackoff
	switch {
	case w.outage:
		st := w.q.stats()
		w.log.Info("reconnected to carbon",
			"down_for", time.Since(w.outageStart).Round(time.Millisecond).String(),
			"failed_attempts", w.attempts,
			"backlog_points", st.backlogLines,
			"resend_points", st.windowLines)
	case !w.everSent:
		w.log.Info("connected to carbon")
	}
	w.everSent = true
	w.outage = false
	w.attempts = 0
}

// fail records a failed attempt. Only the first failure of an outage is
// logged at warn level; the others are logged at debug level.
func (w *Writer) fail(msg string, err error) {
	w.attempts++
	if w.outage {
		w.log.Debug(msg, "err", err, "attempt", w.attempts)
		return
	}
	w.outage = true
	w.outageStart = time.Now()
	w.log.Warn(msg+"; queueing points and retrying", "err", err,
		"backlog_points", w.q.stats().backlogLines)
}

// sleep waits for the current backoff, or until ctx is done, and doubles the
// backoff for the next failure.
func (w *Writer) sleep(ctx context.Context) {
	t := time.NewTimer(w.backoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	w.backoff = min(2*w.backoff, maxBackoff)
}
