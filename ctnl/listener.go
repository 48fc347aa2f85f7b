package ctnl

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

const (
	// groupCTDestroy is NFNLGRP_CONNTRACK_DESTROY.
	groupCTDestroy = 3
	// slotSize is the room for one datagram. A conntrack event is a few
	// hundred bytes; a larger one is counted as undecodable.
	slotSize = 4096
	// DefaultBatch is how many datagrams one receive call may return.
	DefaultBatch = 256
	// skMeminfoDrops is the index of SK_MEMINFO_DROPS in SO_MEMINFO.
	skMeminfoDrops = 8
	// skMeminfoRmemAlloc is the index of SK_MEMINFO_RMEM_ALLOC.
	skMeminfoRmemAlloc = 0
	skMeminfoVars      = 9
)

var (
	errListenerClosed = errors.New("conntrack listener is closed")
	errMethod         = errors.New("unknown receive method")
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

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// Listener receives conntrack DESTROY events.
type Listener struct {
	fd       int
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
}

// Listen opens a netlink socket in the configured namespace and joins the
// conntrack DESTROY group.
func Listen(cfg ListenConfig) (*Listener, error) {
	switch cfg.Method {
	case "", MethodAuto, MethodIOURing, MethodRecvmmsg:
	default:
		return nil, fmt.Errorf("%w %q: want %s, %s or %s", errMethod, cfg.Method, MethodAuto, MethodIOURing, MethodRecvmmsg)
	}
	batch := cfg.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	var fd int
	err := netns.Do(cfg.NetNS, func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening conntrack netlink socket: %w", withCapability(err))
	}
	linger := cfg.Linger
	if linger == 0 {
		linger = DefaultLinger
	}
	l := &Listener{fd: fd, batch: batch, linger: linger, reliable: cfg.Reliable, buf: cfg.ReadBuffer, maxBuf: cfg.MaxReadBuffer}
	if err := l.setup(cfg); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := l.chooseMethod(cfg.Method); err != nil {
		unix.Close(fd)
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
	r, err := newRecvRing(l.fd, ringSlots)
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

func (l *Listener) setup(cfg ListenConfig) error {
	if err := unix.Bind(l.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding conntrack netlink socket: %w", err)
	}
	if cfg.ReadBuffer > 0 {
		if err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.ReadBuffer); err != nil {
			return fmt.Errorf("setting the conntrack receive buffer to %d bytes: %w", cfg.ReadBuffer, err)
		}
	}
	if cfg.NoENOBUFS || cfg.Reliable {
		if err := unix.SetsockoptInt(l.fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1); err != nil {
			return fmt.Errorf("setting NETLINK_NO_ENOBUFS: %w", err)
		}
	}
	if cfg.Reliable {
		if err := unix.SetsockoptInt(l.fd, unix.SOL_NETLINK, unix.NETLINK_BROADCAST_ERROR, 1); err != nil {
			return fmt.Errorf("setting NETLINK_BROADCAST_ERROR: %w", err)
		}
	}
	// A receive timeout lets Run notice that its context is done.
	tv := unix.NsecToTimeval(int64(250e6))
	if err := unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting the receive timeout: %w", err)
	}
	if err := unix.SetsockoptInt(l.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, groupCTDestroy); err != nil {
		return fmt.Errorf("joining the conntrack DESTROY group: %w", err)
	}
	return nil
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

// runRing receives through an io_uring multishot receive. It fails with
// errRingUnavailable wrapped when the ring cannot be set up.
func (l *Listener) runRing(ctx context.Context, fn func([]Flow)) error {
	// The ring serves only the thread that made it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := newRecvRing(l.fd, ringSlots)
	if err != nil {
		return err
	}
	defer r.close()
	l.using.Store(MethodIOURing)
	var fail error
	handle := func(c completion, data []byte) {
		if c.userData != ringRecvUserData {
			return
		}
		switch errno := unix.Errno(-c.res); {
		case c.res > slotSize:
			l.decodeErrors.Add(1)
		case c.res > 0:
			l.decodeDatagram(data)
			if len(l.flows) >= l.batch {
				l.deliver(fn)
			}
		case c.res == 0, errno == unix.EAGAIN, errno == unix.EINTR, errno == unix.ECANCELED:
		case errno == unix.ENOBUFS && r.held == 0:
			// Out of buffers: the receive is armed again below.
		case errno == unix.ENOBUFS:
			l.overruns.Add(1)
			l.grow(true)
		case errno == unix.EINVAL, errno == unix.EOPNOTSUPP:
			// A kernel that sets up the ring but cannot receive this
			// way: Run falls back to recvmmsg under MethodAuto.
			fail = fmt.Errorf("%w: multishot receive: %w", errRingUnavailable, errno)
		default:
			fail = fmt.Errorf("receiving conntrack events: %w", errno)
		}
	}
	l.flows = l.flows[:0]
	wait, timeout := uint32(1), 250*time.Millisecond
	for ctx.Err() == nil {
		if l.closed.Load() {
			return errListenerClosed
		}
		if !r.receiving {
			r.arm()
		}
		t0 := time.Now()
		if err := r.enter(wait, timeout); err != nil {
			return err
		}
		n := r.reap(handle)
		l.deliver(fn)
		if fail != nil {
			return fail
		}
		if !l.queued() {
			l.drained.Store(t0.UnixNano())
		}
		l.grow(false)
		// After a full batch, or while events wait in the socket (a round
		// can end early: the receive ran out of buffers or was just
		// armed), go on at once; after a partial batch that emptied the
		// socket, gather up to a batch for at most the linger time; after
		// a quiet spell, block until an event comes.
		wait, timeout = 1, 250*time.Millisecond
		if n > 0 && n < l.batch && l.linger > 0 && !l.queued() {
			wait, timeout = uint32(l.batch), l.linger
		}
	}
	return nil
}

// grow doubles the receive buffer, up to its maximum, when the kernel has
// dropped events since the last check. Unless overrun is true it checks at
// most every 100ms.
func (l *Listener) grow(overrun bool) {
	if l.maxBuf <= l.buf || (!overrun && time.Since(l.lastCheck) < 100*time.Millisecond) {
		return
	}
	l.lastCheck = time.Now()
	drops, err := l.drops()
	if err != nil || drops == l.lastDrops {
		return
	}
	l.lastDrops = drops
	size := min(2*max(l.buf, 1<<20), l.maxBuf)
	if err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
		return
	}
	l.buf = size
	l.growths.Add(1)
}

// meminfo reads the socket's SO_MEMINFO counters.
func (l *Listener) meminfo() ([skMeminfoVars]uint32, error) {
	var mem [skMeminfoVars]uint32
	size := uint32(unsafe.Sizeof(mem))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(l.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return mem, errno
	}
	return mem, nil
}

// drops reads the socket's drop counter (SK_MEMINFO_DROPS).
func (l *Listener) drops() (uint64, error) {
	mem, err := l.meminfo()
	if err != nil {
		return 0, fmt.Errorf("reading the socket's drop counter: %w", err)
	}
	return uint64(mem[skMeminfoDrops]), nil
}

// queued reports whether events wait in the socket's receive queue
// (SK_MEMINFO_RMEM_ALLOC).
func (l *Listener) queued() bool {
	mem, err := l.meminfo()
	return err == nil && mem[skMeminfoRmemAlloc] > 0
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
		if m.typ>>8 != subsysCT || m.typ&0xff != msgCTDelete {
			if m.typ >= 16 { // not a netlink control message
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
		if err := decodeFlow(m.payload, &l.flows[len(l.flows)-1]); err != nil {
			l.flows = l.flows[:len(l.flows)-1]
			l.decodeErrors.Add(1)
		}
	}
}

// recv fills up to l.batch datagrams with one recvmmsg call, blocking for
// the first one only.
func (l *Listener) recv() (int, error) {
	for i := range l.msgs {
		l.msgs[i].hdr.Flags = 0
		l.msgs[i].len = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(l.fd), uintptr(unsafe.Pointer(&l.msgs[0])),
		uintptr(len(l.msgs)), unix.MSG_WAITFORONE, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
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
	rb, err := unix.GetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return s, fmt.Errorf("reading the receive buffer size: %w", err)
	}
	s.ReadBuffer = rb
	return s, nil
}

// Close closes the socket. Call it after Run has returned.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	return unix.Close(l.fd)
}
