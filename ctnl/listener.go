package ctnl

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// slotSize is the room for one datagram. A conntrack event is a few
	// hundred bytes; a larger one is counted as undecodable.
	slotSize = 4096
	// DefaultBatch is how many datagrams one receive call may return.
	DefaultBatch = 256
)

// ListenConfig configures a Listener.
type ListenConfig struct {
	// NetNS is an open file descriptor of the network namespace to listen
	// in; zero means the caller's namespace.
	NetNS int
	// ReadBuffer is the socket receive buffer in bytes, set with
	// SO_RCVBUFFORCE (so above net.core.rmem_max); 0 keeps the default.
	ReadBuffer int
	// MaxReadBuffer, when larger than ReadBuffer, lets the listener double
	// its buffer, up to this size, each time the kernel drops events.
	MaxReadBuffer int
	// NoENOBUFS sets NETLINK_NO_ENOBUFS: the kernel drops what does not fit
	// without reporting ENOBUFS and, unlike the default, without dropping
	// everything else until the reader has emptied the queue.
	NoENOBUFS bool
	// Reliable sets NETLINK_BROADCAST_ERROR as well as NETLINK_NO_ENOBUFS:
	// conntrack then keeps an entry whose DESTROY event could not be
	// delivered and delivers it again later, so no event is lost, at the
	// price of dying entries held in the table meanwhile.
	Reliable bool
	// Batch is how many datagrams one receive call may return;
	// DefaultBatch when 0.
	Batch int
	// Filter, when not nil, is attached to the socket before it joins the
	// DESTROY group, so that the kernel drops the events it refuses before
	// they are queued (see EventFilter): they cost nothing, and are counted
	// nowhere.
	Filter *EventFilter
	// Method is how events are received: MethodAuto (the default when
	// empty) uses io_uring where the kernel allows it and recvmmsg
	// otherwise.
	Method Method
	// Linger is how long the listener waits after a receive call that did
	// not fill a batch, so that events gather in the socket buffer and the
	// next call takes many at once: fewer wake-ups and system calls per
	// event at the price of that much latency. DefaultLinger when 0;
	// negative disables it.
	Linger time.Duration
}

// Method is a way of receiving events.
type Method string

// The receive methods.
const (
	// MethodAuto uses io_uring where it is available, recvmmsg otherwise.
	MethodAuto Method = "auto"
	// MethodIOURing uses an io_uring multishot receive into provided
	// buffers (Linux 6.1 and later): no system call per event while
	// events keep coming. Docker's and Kubernetes' default seccomp
	// profiles forbid io_uring.
	MethodIOURing Method = "io_uring"
	// MethodRecvmmsg receives up to a batch of datagrams per recvmmsg call.
	MethodRecvmmsg Method = "recvmmsg"
)

// ringSlots is the number of receive buffers of the io_uring ring.
const ringSlots = 1024

// DefaultLinger is the default ListenConfig.Linger.
const DefaultLinger = 2 * time.Millisecond

// ListenerStats are a Listener's counters.
type ListenerStats struct {
	// Events is the number of DESTROY events decoded.
	Events uint64
	// DecodeErrors is the number of messages that could not be decoded and
	// were skipped.
	DecodeErrors uint64
	// Overruns is the number of times the kernel reported ENOBUFS.
	Overruns uint64
	// Drops is the kernel's count of events it could not queue on the
	// socket (SK_MEMINFO_DROPS).
	Drops uint64
	// Lost is the number of events lost for good: Drops, except in
	// reliable mode, where the kernel delivers a dropped event again.
	Lost uint64
	// ReadBuffer is the receive buffer the kernel granted, in bytes.
	ReadBuffer int
	// BufferGrowths counts how often the buffer was doubled after drops.
	BufferGrowths uint64
	// Method is how events are received now.
	Method Method
}

// Listener receives conntrack DESTROY events.
type Listener struct {
	sock     socket
	batch    int
	linger   time.Duration
	reliable bool
	method   Method
	using    atomic.Value // Method
	ringErr  atomic.Pointer[error]

	// Buffer growth, owned by Run.
	buf, maxBuf int
	lastDrops   uint64
	lastCheck   time.Time
	growths     atomic.Uint64

	// The recvmmsg receive, made on first use.
	bufs []byte
	iovs []unix.Iovec
	msgs []mmsghdr

	flows []Flow

	closed       atomic.Bool
	drained      atomic.Int64 // Unix nanoseconds; see Drained
	events       atomic.Uint64
	decodeErrors atomic.Uint64
	overruns     atomic.Uint64

	// closeMu keeps SetFilter from reaching a socket Close has closed
	// (its descriptor may be another file's by then).
	closeMu sync.Mutex
}

// Listen opens a netlink socket in the namespace cfg names and joins the
// conntrack DESTROY group. cfg may be nil (the caller's namespace, the
// defaults); the Listener keeps a copy of it.
func Listen(config *ListenConfig) (*Listener, error) {
	var cfg ListenConfig
	if config != nil {
		cfg = *config
	}
	switch cfg.Method {
	case "", MethodAuto, MethodIOURing, MethodRecvmmsg:
	default:
		return nil, fmt.Errorf("%w %q: want %s, %s or %s", errMethod, cfg.Method, MethodAuto, MethodIOURing, MethodRecvmmsg)
	}
	batch := cfg.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	s, err := openSocket(cfg)
	if err != nil {
		return nil, err
	}
	return newListener(cfg, batch, s)
}

// newListener makes a Listener of cfg that receives from s, a batch at a
// time, and settles how. It closes s if it fails.
func newListener(cfg ListenConfig, batch int, s socket) (*Listener, error) {
	linger := cfg.Linger
	if linger == 0 {
		linger = DefaultLinger
	}
	l := &Listener{sock: s, batch: batch, linger: linger, reliable: cfg.Reliable, buf: cfg.ReadBuffer, maxBuf: cfg.MaxReadBuffer}
	if err := l.chooseMethod(cfg.Method); err != nil {
		s.close()
		return nil, err
	}
	l.flows = make([]Flow, 0, batch)
	return l, nil
}

// chooseMethod settles how Run will receive. For MethodAuto it sets up an
// io_uring ring and closes it again, to know whether Run can use one.
func (l *Listener) chooseMethod(m Method) error {
	l.method = m
	if m == "" {
		l.method = MethodAuto
	}
	if l.method == MethodRecvmmsg {
		l.using.Store(MethodRecvmmsg)
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := l.sock.newRing(ringSlots)
	if err != nil {
		if l.method == MethodIOURing {
			return err
		}
		l.ringErr.Store(&err)
		l.using.Store(MethodRecvmmsg)
		return nil
	}
	r.close()
	l.using.Store(MethodIOURing)
	return nil
}

// Method returns how the Listener receives events and, when it does not
// use io_uring under MethodAuto, why not.
func (l *Listener) Method() (Method, error) {
	m, _ := l.using.Load().(Method)
	if err := l.ringErr.Load(); err != nil {
		return m, *err
	}
	return m, nil
}

// Run receives events until ctx is done or the socket fails for good, and
// calls fn with each batch of decoded flows. The slice is reused after fn
// returns. An overrun (ENOBUFS) is counted and receiving goes on; a message
// that does not decode is counted and skipped.
//
// Run receives through io_uring where the kernel allows it and the
// configuration does not rule it out, and with recvmmsg otherwise.
func (l *Listener) Run(ctx context.Context, fn func([]Flow)) error {
	if m, _ := l.Method(); m == MethodIOURing {
		err := l.runRing(ctx, fn)
		if err == nil || !errors.Is(err, errRingUnavailable) || l.method == MethodIOURing {
			return err
		}
		l.ringErr.Store(&err)
	}
	l.using.Store(MethodRecvmmsg)
	return l.runRecvmmsg(ctx, fn)
}

// deliver hands the decoded flows to fn and counts them after it returns:
// a reader that takes Stats before the aggregated flows never sees more
// events than flows.
func (l *Listener) deliver(fn func([]Flow)) {
	if len(l.flows) > 0 {
		fn(l.flows)
		l.events.Add(uint64(len(l.flows)))
		l.flows = l.flows[:0]
	}
}

// decodeDatagram decodes every DESTROY event of one datagram into l.flows.
func (l *Listener) decodeDatagram(b []byte) {
	for len(b) > 0 {
		m, rest, err := nextMessage(b)
		if err != nil {
			l.decodeErrors.Add(1)
			return
		}
		b = rest
		if m.Type>>8 != subsysCT || m.Type&0xff != msgCTDelete {
			if m.Type >= 16 { // not a netlink control message
				l.decodeErrors.Add(1)
			}
			continue
		}
		// decodeFlow zeroes the slot, so reslice rather than append a
		// zero Flow when there is room.
		if n := len(l.flows); n < cap(l.flows) {
			l.flows = l.flows[:n+1]
		} else {
			l.flows = append(l.flows, Flow{})
		}
		if err := decodeFlow(m.Payload, &l.flows[len(l.flows)-1]); err != nil {
			l.flows = l.flows[:len(l.flows)-1]
			l.decodeErrors.Add(1)
		}
	}
}

// Drained returns a time before which every event the kernel queued on the
// socket has been handed to Run's fn: the start of the latest receive round
// that left the socket empty. It is zero until Run has emptied it once.
func (l *Listener) Drained() time.Time {
	if ns := l.drained.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Stats returns the Listener's counters, with the kernel's drop count read
// now.
func (l *Listener) Stats() (ListenerStats, error) {
	s := ListenerStats{
		Events:       l.events.Load(),
		DecodeErrors: l.decodeErrors.Load(),
		Overruns:     l.overruns.Load(),

		BufferGrowths: l.growths.Load(),
	}
	s.Method, _ = l.Method()
	if l.closed.Load() {
		return s, errListenerClosed
	}
	drops, err := l.drops()
	if err != nil {
		return s, err
	}
	s.Drops = drops
	if !l.reliable {
		s.Lost = drops
	}
	rb, err := l.sock.readBuffer()
	if err != nil {
		return s, fmt.Errorf("reading the receive buffer size: %w", err)
	}
	s.ReadBuffer = rb
	return s, nil
}

// SetFilter replaces the event filter the socket runs (ListenConfig.Filter)
// with f, or removes it when f is nil, while Run may be receiving: events
// queued already were judged by the former filter, those queued afterwards
// by f. If it fails, the former filter stays.
func (l *Listener) SetFilter(f *EventFilter) error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed.Load() {
		return errListenerClosed
	}
	return l.sock.setFilter(f)
}

// Close closes the socket. Call it after Run has returned.
func (l *Listener) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed.Swap(true) {
		return nil
	}
	return l.sock.close()
}
