package graphite

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// Source provides the snapshots a Writer sends.
type Source interface {
	// Snapshot returns the current state of the metric tree, or nil when
	// there is nothing to send this time.
	Snapshot(ctx context.Context) *tree.Snapshot
}

// Stats is a reading of a Writer's counters.
type Stats struct {
	// Sent is the number of points carbon's kernel acknowledged, each
	// counted once.
	Sent uint64
	// Resent is the number of points sent again from the resend window
	// after a failed connection, counted once acknowledged.
	Resent uint64
	// Dropped is the number of points dropped because the backlog was full.
	Dropped uint64
	// BacklogPoints is the number of points not acknowledged yet, resends
	// aside, including those being written.
	BacklogPoints int
	// BacklogBytes is the size of those points.
	BacklogBytes int
	// WindowPoints is the number of points kept to be sent again after a
	// failed connection, including those queued for resending.
	WindowPoints int
	// WindowBytes is the size of those points.
	WindowBytes int
	// Connected tells whether a connection to carbon is open.
	Connected bool
	// ConnectErrors is the number of failed attempts to connect.
	ConnectErrors uint64
	// WriteErrors is the number of connections lost: writes that failed,
	// and connections found closed by carbon.
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
	q    *queue

	running atomic.Bool

	connected     atomic.Bool
	connectErrors atomic.Uint64
	writeErrors   atomic.Uint64
	lastSend      atomic.Int64 // Unix nanoseconds; 0 before the first write

	// warnedTooBig and warnedCollision belong to the goroutine that queues
	// snapshots.
	warnedTooBig, warnedCollision bool

	// The fields below belong to the sender goroutine.
	dialer    net.Dialer
	conn      net.Conn
	raw       syscall.RawConn // conn's socket, for SIOCOUTQ and the probe
	stopAbort func() bool     // unregisters the deadline that aborts conn's I/O on stop
	written   int64           // bytes written on conn
	acked     int64           // bytes of conn acknowledged by carbon's kernel
	// stalled is set when the last connection ended with a write that
	// timed out, until the next attempt to connect.
	stalled     bool
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
	form := newFormatter(cfg.Prefix, cfg.Mode)
	form.tagged = cfg.Tagged
	w := &Writer{
		cfg:     cfg,
		src:     src,
		log:     logger.With("component", "graphite", "address", cfg.Address),
		form:    form,
		q:       newQueue(cfg.BacklogPoints, cfg.BacklogBytes, cfg.ResendWindowBytes, cfg.ResendWindow),
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
	q := w.q.stats()
	s := Stats{
		Sent:          q.sent,
		Resent:        q.resent,
		Dropped:       q.dropped,
		BacklogPoints: q.backlogLines,
		BacklogBytes:  q.backlogBytes,
		WindowPoints:  q.windowLines,
		WindowBytes:   q.windowBytes,
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
// carbon, until ctx is done. It then takes one last snapshot, sends what is
// still queued and waits for carbon's kernel to acknowledge it, all within
// Timeout, closes the connection and returns nil. Points not acknowledged
// then are lost. Run may be called only once.
func (w *Writer) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer w.q.release()
	// sctx ends Timeout after ctx: it bounds the snapshots and the flush
	// of the stop.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	unregister := context.AfterFunc(ctx, func() { time.AfterFunc(w.cfg.Timeout, stop) })
	defer unregister()
	draining := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.send(sctx, draining)
	}()

	w.collect(ctx, sctx)
	w.final(sctx)
	close(draining)
	<-done
	w.closeConn()
	if st := w.q.stats(); st.backlogLines > 0 {
		w.log.Warn("stopped with points carbon did not acknowledge", "points", st.backlogLines)
	} else {
		w.log.Info("stopped")
	}
	return nil
}

// collect queues a snapshot at once and then at every tick until ctx is
// done. It never waits for the network. Snapshots are taken with sctx, so
// that one begun before ctx ends completes and is sent; one that sctx cut
// short is not.
func (w *Writer) collect(ctx, sctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		snap := w.src.Snapshot(sctx)
		if sctx.Err() != nil {
			return
		}
		w.queue(snap, false)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// final queues the last snapshot, taken when the Writer stops. ctx ends when
// the time to stop is up.
func (w *Writer) final(ctx context.Context) {
	snap := w.src.Snapshot(ctx)
	if ctx.Err() != nil {
		w.log.Warn("no final snapshot: taking it took longer than the timeout", "timeout", w.cfg.Timeout.String())
		return
	}
	w.queue(snap, true)
}

// queue formats snap and appends its lines to the backlog. A snapshot with a
// zero Time is stamped with the current time. final selects the formatting
// of the last snapshot (see formatter.formatFinal).
func (w *Writer) queue(snap *tree.Snapshot, final bool) {
	if snap == nil {
		return
	}
	if snap.Time.IsZero() {
		s := *snap
		s.Time = time.Now()
		snap = &s
	}
	b := w.q.newBatch()
	if final {
		w.form.formatFinal(snap, b)
	} else {
		w.form.format(snap, b)
	}
	points, size := b.lines, b.bytes
	if n := w.form.collisions.Load(); n > 0 && !w.warnedCollision {
		w.warnedCollision = true
		w.log.Warn("two samples of one snapshot have the same Graphite path: the first is sent, the others left out and counted in netfilter_exporter_graphite_path_collisions",
			"path", *w.form.collided.Load(), "points_left_out", n)
	}
	if b.push() && !w.warnedTooBig {
		w.warnedTooBig = true
		w.log.Warn("a snapshot is larger than the Graphite backlog: its oldest points are dropped even when carbon keeps up; raise --graphite.backlog-size",
			"points", points, "bytes", size,
			"backlog_limit_points", w.cfg.BacklogPoints, "backlog_limit_bytes", w.cfg.BacklogBytes)
	}
}
