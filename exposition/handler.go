package exposition

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	prom "github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// Source gives snapshots of the metric tree; *collector.Set is one.
type Source interface {
	Snapshot(ctx context.Context) *tree.Snapshot
}

// Defaults of HandlerOpts.
const (
	DefaultWriteTimeout  = 10 * time.Second
	DefaultScrapeTimeout = 2 * time.Minute
)

// Under pressure, when every request slot is taken, a client whose write has
// made no progress for stallAfter is cut off to make room, and a new request
// waits at most slotWait for a slot before it is refused.
const (
	stallAfter = time.Second
	slotWait   = 2 * time.Second
)

// writeChunk is how much of a body is written with one deadline.
const writeChunk = 64 << 10

// HandlerOpts configures a Handler.
type HandlerOpts struct {
	// Gatherer gives the families served before the snapshot's: Go runtime,
	// process, build information, the handler's own, the Graphite
	// writer's. It may be nil.
	Gatherer prom.Gatherer
	// Registerer, when not nil, gets the handler's own metrics.
	Registerer prom.Registerer
	// MaxRequests bounds the requests served at once; 0 means no bound.
	MaxRequests int
	// WriteTimeout bounds each write of a chunk of the response: a client
	// that takes no chunk for this long is cut off. Every chunk gets a
	// fresh deadline, so a slow client that keeps reading gets the whole
	// body. 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ScrapeTimeout bounds a whole request, from its arrival to its last
	// byte. 0 means DefaultScrapeTimeout.
	ScrapeTimeout time.Duration
	// Logger gets the samples and families that had to be left out.
	Logger *slog.Logger
}

// Handler serves snapshots of a Source over HTTP. Scrapes that arrive while
// a snapshot is being taken and rendered share it; a scrape arriving after
// that gets a fresh one.
type Handler struct {
	src  Source
	opts HandlerOpts

	slots chan struct{}
	// slotWait bounds the wait for a slot; slotWait by default.
	slotWait time.Duration

	mu      sync.Mutex
	current *generation
	// lastSize remembers the compressed size of the previous body of each
	// format, to size the next one's buffer.
	lastSize [2]int

	wmu     sync.Mutex
	writers map[*clientWriter]struct{}

	cutOff    *prom.CounterVec
	errs      prom.Counter
	snapshots atomic.Uint64
	// waiting counts the requests waiting for a body.
	waiting atomic.Int64
}

// generation is one snapshot and its renderings. It is joinable until
// finished: a scrape that finds it unfinished is served from it.
type generation struct {
	finished bool
	bodies   [2]*body
	queue    []Format
}

// body is one rendering of a snapshot, gzip-compressed.
type body struct {
	ready chan struct{}
	gz    []byte
	size  int64 // uncompressed
	err   error
}

// NewHandler returns a Handler serving snapshots of src.
func NewHandler(src Source, opts HandlerOpts) *Handler {
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = DefaultScrapeTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{src: src, opts: opts, writers: make(map[*clientWriter]struct{}), slotWait: slotWait}
	if opts.MaxRequests > 0 {
		h.slots = make(chan struct{}, opts.MaxRequests)
	}
	h.cutOff = prom.NewCounterVec(prom.CounterOpts{
		Name: "netfilter_exporter_http_clients_cut_off_total",
		Help: "Responses on the metrics path cut off before their end, by reason: write_timeout (the client took nothing for --web.write-timeout), stalled (the client had stopped reading and its request slot was needed), scrape_timeout (--web.scrape-timeout passed).",
	}, []string{"reason"})
	h.errs = prom.NewCounter(prom.CounterOpts{
		Name: "netfilter_exporter_exposition_errors_total",
		Help: "Samples and metric families left out of /metrics because they could not be served (invalid names or label values, clashing families); each is logged.",
	})
	for _, r := range []string{"write_timeout", "stalled", "scrape_timeout"} {
		h.cutOff.WithLabelValues(r)
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.cutOff, h.errs)
	}
	return h
}

// Snapshots returns how many snapshots the Handler has taken.
func (h *Handler) Snapshots() uint64 {
	return h.snapshots.Load()
}

// ServeHTTP serves one scrape.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.ScrapeTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	coding := negotiateEncoding(r.Header)
	if coding == codingNone {
		w.Header().Add("Vary", "Accept-Encoding")
		http.Error(w, "Neither gzip nor identity is acceptable (Accept-Encoding), the only content codings served.", http.StatusNotAcceptable)
		return
	}
	if !h.acquire(ctx) {
		http.Error(w, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", h.opts.MaxRequests), http.StatusServiceUnavailable)
		return
	}
	defer h.release()

	format, contentType := negotiate(r.Header)
	b, err := h.body(ctx, format)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			h.cutOff.WithLabelValues("scrape_timeout").Inc()
		}
		http.Error(w, "An error has occurred while rendering metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}

	hdr := w.Header()
	hdr.Set("Content-Type", contentType)
	hdr.Add("Vary", "Accept")
	hdr.Add("Vary", "Accept-Encoding")
	gz := coding == codingGzip
	var zr *gzip.Reader
	if gz {
		hdr.Set("Content-Encoding", "gzip")
		hdr.Set("Content-Length", strconv.Itoa(len(b.gz)))
	} else {
		// Only the compressed body is kept, whatever the number of
		// clients; this client gets it decompressed on the fly.
		hdr.Set("Content-Length", strconv.FormatInt(b.size, 10))
		if zr, err = gzip.NewReader(bytes.NewReader(b.gz)); err != nil {
			http.Error(w, "An error has occurred while rendering metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		defer zr.Close()
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	cw := &clientWriter{w: w, rc: http.NewResponseController(w), timeout: h.opts.WriteTimeout, end: deadline}
	h.track(cw, true)
	if gz {
		err = cw.writeBody(b.gz)
	} else {
		err = cw.copy(zr)
	}
	h.track(cw, false)
	if err != nil {
		switch {
		case cw.evicted.Load():
			h.cutOff.WithLabelValues("stalled").Inc()
		case errors.Is(err, errScrapeDeadline) || time.Now().After(deadline):
			h.cutOff.WithLabelValues("scrape_timeout").Inc()
		case isTimeout(err):
			h.cutOff.WithLabelValues("write_timeout").Inc()
		}
		return
	}
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// acquire takes a request slot. When all are taken it cuts off the client
// that has been stalled the longest, if one has been for stallAfter, and
// waits up to slotWait for a slot.
func (h *Handler) acquire(ctx context.Context) bool {
	if h.slots == nil {
		return true
	}
	select {
	case h.slots <- struct{}{}:
		return true
	default:
	}
	wait := time.NewTimer(h.slotWait)
	defer wait.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		h.evictStalled()
		select {
		case h.slots <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		case <-wait.C:
			return false
		case <-tick.C:
		}
	}
}

func (h *Handler) release() {
	if h.slots != nil {
		<-h.slots
	}
}

// track adds or removes a writer from those that can be cut off.
func (h *Handler) track(cw *clientWriter, add bool) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if add {
		h.writers[cw] = struct{}{}
	} else {
		delete(h.writers, cw)
	}
}

// evictStalled cuts off the writer whose current write has been blocked
// the longest, if that is stallAfter or more.
func (h *Handler) evictStalled() {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	var victim *clientWriter
	oldest := time.Now().Add(-stallAfter).UnixNano()
	for cw := range h.writers {
		since := cw.blockedSince.Load()
		if since != 0 && since <= oldest && !cw.evicted.Load() {
			victim, oldest = cw, since
		}
	}
	if victim != nil {
		victim.evicted.Store(true)
		// A deadline in the past makes the blocked write return.
		_ = victim.rc.SetWriteDeadline(time.Unix(1, 0))
		delete(h.writers, victim)
	}
}

var errScrapeDeadline = errors.New("scrape deadline passed")

// clientWriter writes a body to one client, chunk by chunk, each with a
// fresh write deadline, none past the scrape's end.
type clientWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	end     time.Time
	// blockedSince is when the write in progress started (Unix
	// nanoseconds), 0 between writes.
	blockedSince atomic.Int64
	evicted      atomic.Bool
}

// chunkPool holds the buffers bodies are decompressed into.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, writeChunk)
	return &b
}}

// writeBody writes p, a body shared with other clients, in chunks, without
// copying it.
func (cw *clientWriter) writeBody(p []byte) (err error) {
	defer cw.finish()
	for len(p) > 0 {
		n := min(len(p), writeChunk)
		if err := cw.write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// copy writes everything src holds, through a pooled buffer.
func (cw *clientWriter) copy(src io.Reader) error {
	defer cw.finish()
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	for {
		n, err := io.ReadFull(src, *bp)
		if n > 0 {
			if werr := cw.write((*bp)[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// finish sends what the server buffered and leaves no deadline behind for
// the next request on the connection.
func (cw *clientWriter) finish() {
	if !cw.evicted.Load() && cw.setDeadline() == nil {
		cw.blockedSince.Store(time.Now().UnixNano())
		_ = cw.rc.Flush()
		cw.blockedSince.Store(0)
	}
	_ = cw.rc.SetWriteDeadline(time.Time{})
}

// setDeadline gives the next write its deadline.
func (cw *clientWriter) setDeadline() error {
	d := time.Now().Add(cw.timeout)
	if !cw.end.IsZero() && cw.end.Before(d) {
		d = cw.end
	}
	err := cw.rc.SetWriteDeadline(d)
	if errors.Is(err, http.ErrNotSupported) {
		return nil
	}
	return err
}

// write writes one chunk with a fresh deadline.
func (cw *clientWriter) write(p []byte) error {
	if !cw.end.IsZero() && !time.Now().Before(cw.end) {
		return errScrapeDeadline
	}
	if err := cw.setDeadline(); err != nil {
		return err
	}
	cw.blockedSince.Store(time.Now().UnixNano())
	_, err := cw.w.Write(p)
	cw.blockedSince.Store(0)
	return err
}

// body returns the rendering of the current snapshot in format, starting a
// snapshot if none is under way.
func (h *Handler) body(ctx context.Context, format Format) (*body, error) {
	h.mu.Lock()
	g := h.current
	lead := false
	if g == nil || g.finished {
		g = &generation{}
		h.current = g
		lead = true
	}
	b := g.bodies[format]
	if b == nil {
		b = &body{ready: make(chan struct{})}
		g.bodies[format] = b
		g.queue = append(g.queue, format)
	}
	h.mu.Unlock()
	if lead {
		// The snapshot is taken apart from the request that started it:
		// the scrapes that join it need it even if that one goes away.
		go h.build(g)
	}
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	select {
	case <-b.ready:
		return b, b.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// build takes a snapshot, gathers the registry and renders every format
// asked for until the generation is finished.
func (h *Handler) build(g *generation) {
	snap := h.src.Snapshot(context.Background())
	h.snapshots.Add(1)
	var reg []*dto.MetricFamily
	if h.opts.Gatherer != nil {
		var err error
		reg, err = h.opts.Gatherer.Gather()
		if err != nil {
			// Gather returns what it could alongside the error.
			h.opts.Logger.Error("gathering the exporter's own metrics", "err", err)
			h.errs.Inc()
		}
	}
	for {
		h.mu.Lock()
		if len(g.queue) == 0 {
			g.finished = true
			g.bodies = [2]*body{}
			h.mu.Unlock()
			return
		}
		f := g.queue[0]
		g.queue = g.queue[1:]
		b := g.bodies[f]
		size := h.lastSize[f]
		h.mu.Unlock()

		h.renderBody(b, f, reg, snap, size)

		h.mu.Lock()
		h.lastSize[f] = len(b.gz)
		h.mu.Unlock()
		close(b.ready)
	}
}

// gzipPool holds gzip writers between renderings.
var gzipPool sync.Pool

// renderBody renders snap in format f into b, gzip-compressed.
func (h *Handler) renderBody(b *body, f Format, reg []*dto.MetricFamily, snap *tree.Snapshot, sizeHint int) {
	out := bytes.NewBuffer(make([]byte, 0, sizeHint+sizeHint/8+4096))
	zw, _ := gzipPool.Get().(*gzip.Writer)
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(out, gzip.BestSpeed)
	} else {
		zw.Reset(out)
	}
	cw := &countingWriter{w: zw}
	leftOut, err := render(cw, f, reg, snap)
	if err == nil {
		err = zw.Close()
	}
	gzipPool.Put(zw)
	if leftOut.n > 0 {
		h.errs.Add(float64(leftOut.n))
		h.opts.Logger.Error("left out of /metrics", "count", leftOut.n, "err", leftOut.err)
	}
	b.gz, b.size, b.err = out.Bytes(), cw.n, err
}

// countingWriter counts what goes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
