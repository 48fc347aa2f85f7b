package graphite

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

const (
	// maxBatchBytes is the most bytes the sender writes in one call; a line
	// longer than that is written alone.
	maxBatchBytes = 64 << 10
	// minBackoff and maxBackoff bound the wait between two attempts to reach
	// carbon. The wait doubles after every failure and is reset by a
	// successful write.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// probeWait is how long the liveness probe of an idle connection waits
	// for a read to report that carbon has closed it.
	probeWait = 2 * time.Millisecond
)

// Source provides the snapshots a Writer sends.
type Source interface {
	// Snapshot returns the current state of the metric tree, or nil when
	// there is nothing to send this time.
	Snapshot(ctx context.Context) *tree.Snapshot
}

// Stats is a reading of a Writer's counters.
type Stats struct {
	// Sent is the number of lines written to carbon successfully.
	Sent uint64
	// Dropped is the number of lines dropped because the backlog was full.
	Dropped uint64
	// BacklogPoints is the number of lines waiting to be sent, including
	// those of the batch being written.
	BacklogPoints int
	// BacklogBytes is the size of those lines.
	BacklogBytes int
	// Connected tells whether a connection to carbon is open.
	Connected bool
	// ConnectErrors is the number of failed attempts to connect.
	ConnectErrors uint64
	// WriteErrors is the number of writes that failed or were not tried
	// because carbon had closed the connection.
	WriteErrors uint64
	// LastSend is when a write last succeeded; zero if none has.
	LastSend time.Time
}

// Writer sends snapshots to carbon. Create it with New and start it with Run.
type Writer struct {
	cfg  Config
	src  Source
	log  *slog.Logger
	form *formatter
	bl   *backlog

	running atomic.Bool

	connected     atomic.Bool
	connectErrors atomic.Uint64
	writeErrors   atomic.Uint64
	lastSend      atomic.Int64 // Unix nanoseconds; 0 before the first write

	// The fields below belong to the sender goroutine.
	dialer      net.Dialer
	conn        net.Conn
	stopAbort   func() bool // unregisters the deadline that aborts conn's I/O on stop
	batch       []string
	buf         []byte
	backoff     time.Duration
	everSent    bool      // a write has succeeded on some connection
	outage      bool      // carbon is unreachable and that has been logged
	outageStart time.Time // when the outage began
	attempts    int       // failed attempts in the current outage
}

// New returns a Writer that sends the snapshots of src as cfg says, after
// checking cfg. A nil logger discards the log. When cfg.Registerer is not nil
// the Writer's metrics are registered on it.
func New(cfg Config, src Source, logger *slog.Logger) (*Writer, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errSource
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	form := newFormatter(cfg.Prefix, cfg.EscapeChar, cfg.Mode)
	form.tagged = cfg.Tagged
	w := &Writer{
		cfg:     cfg,
		src:     src,
		log:     logger.With("component", "graphite", "address", cfg.Address),
		form:    form,
		bl:      newBacklog(cfg.BacklogPoints, cfg.BacklogBytes),
		dialer:  net.Dialer{Timeout: cfg.Timeout},
		backoff: minBackoff,
	}
	if cfg.Registerer != nil {
		if err := w.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Stats returns the current counters of w.
func (w *Writer) Stats() Stats {
	b := w.bl.stats()
	s := Stats{
		Sent:          b.sent,
		Dropped:       b.dropped,
		BacklogPoints: b.points,
		BacklogBytes:  b.bytes,
		Connected:     w.connected.Load(),
		ConnectErrors: w.connectErrors.Load(),
		WriteErrors:   w.writeErrors.Load(),
	}
	if ns := w.lastSend.Load(); ns != 0 {
		s.LastSend = time.Unix(0, ns)
	}
	return s
}

// Run takes a snapshot at once and then every Interval, and sends them to
// carbon, until ctx is done. It then spends at most Timeout sending what is
// still queued, closes the connection and returns nil. Lines still queued
// then are lost. Run may be called only once.
func (w *Writer) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errRunning
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	draining := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.send(sctx, draining)
	}()

	w.collect(ctx)

	close(draining)
	t := time.AfterFunc(w.cfg.Timeout, stop)
	<-done
	t.Stop()
	w.closeConn()
	if st := w.bl.stats(); st.points > 0 {
		w.log.Warn("stopped with points not sent to carbon", "points", st.points)
	} else {
		w.log.Info("stopped")
	}
	return nil
}

// collect queues a snapshot at once and then at every tick until ctx is
// done. It never waits for the network.
func (w *Writer) collect(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		w.queue(w.src.Snapshot(ctx))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// queue formats snap and appends its lines to the backlog. A snapshot with a
// zero Time is stamped with the current time.
func (w *Writer) queue(snap *tree.Snapshot) {
	if snap == nil {
		return
	}
	if snap.Time.IsZero() {
		s := *snap
		s.Time = time.Now()
		snap = &s
	}
	w.bl.push(w.form.format(snap))
}

// send is the sender goroutine. It writes the backlog to carbon whenever
// lines are queued, reconnecting with backoff after failures, until ctx is
// done. Once draining is closed it returns as soon as the backlog is empty.
func (w *Writer) send(ctx context.Context, draining <-chan struct{}) {
	for ctx.Err() == nil {
		if w.bl.empty() {
			select {
			case <-draining:
				return
			default:
			}
			select {
			case <-w.bl.ready:
			case <-draining:
			case <-ctx.Done():
			}
			continue
		}
		if w.conn == nil {
			if err := w.dial(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				w.connectErrors.Add(1)
				w.fail("cannot connect to carbon", err)
				w.sleep(ctx)
				continue
			}
		}
		if err := w.probe(); err != nil {
			w.writeErrors.Add(1)
			w.closeConn()
			w.fail("carbon closed the connection", err)
			w.sleep(ctx)
			continue
		}
		if err := w.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.writeErrors.Add(1)
			w.closeConn()
			w.fail("cannot write to carbon", err)
			w.sleep(ctx)
		}
	}
}

// dial opens the connection to carbon. The connection's I/O is aborted when
// ctx is done, so that the final flush of Run never outlasts Timeout.
func (w *Writer) dial(ctx context.Context) error {
	conn, err := w.dialer.DialContext(ctx, "tcp", w.cfg.Address)
	if err != nil {
		return err
	}
	w.conn = conn
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
	w.conn = nil
	w.connected.Store(false)
}

// probe checks, before writing to a connection that has been idle, that
// carbon has not closed it: carbon never sends anything, so a read that does
// not time out means the connection is finished. Without the check the next
// batch would be written into a dead socket and lost.
func (w *Writer) probe() error {
	if err := w.conn.SetReadDeadline(time.Now().Add(probeWait)); err != nil {
		return err
	}
	var b [64]byte
	n, err := w.conn.Read(b[:])
	switch {
	case err == nil && n > 0:
		return nil // carbon does not talk; whatever this is, the connection is up
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	case err == nil, errors.Is(err, io.EOF):
		return errPeerClosed
	}
	return err
}

// flush writes the queued lines in batches until the backlog is empty. A
// batch leaves the backlog only once its write has succeeded; a failed batch
// goes back to the front of the backlog.
func (w *Writer) flush(ctx context.Context) error {
	for {
		w.batch = w.bl.take(w.batch[:0], maxBatchBytes)
		if len(w.batch) == 0 {
			return nil
		}
		w.buf = w.buf[:0]
		for _, l := range w.batch {
			w.buf = append(w.buf, l...)
		}
		err := w.conn.SetWriteDeadline(time.Now().Add(w.cfg.Timeout))
		if err == nil {
			// Checked after the deadline is set: once ctx is done, its
			// AfterFunc has set or will set a past deadline that this
			// write cannot override.
			err = ctx.Err()
		}
		if err == nil {
			_, err = w.conn.Write(w.buf)
		}
		if err != nil {
			w.bl.giveBack(w.batch)
			clear(w.batch)
			return err
		}
		w.bl.commit(w.batch)
		clear(w.batch)
		w.succeeded()
	}
}

// succeeded records a successful write and ends the outage, if any.
func (w *Writer) succeeded() {
	w.lastSend.Store(time.Now().UnixNano())
	w.backoff = minBackoff
	switch {
	case w.outage:
		w.log.Info("reconnected to carbon",
			"down_for", time.Since(w.outageStart).Round(time.Millisecond).String(),
			"failed_attempts", w.attempts,
			"backlog_points", w.bl.stats().points)
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
		"backlog_points", w.bl.stats().points)
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
