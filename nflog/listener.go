package nflog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Defaults of the Config fields left zero.
const (
	// DefaultTimeout bounds each configuration request.
	DefaultTimeout = 5 * time.Second
	// DefaultCopyRange is how many bytes of each packet are copied: the
	// IPv4 or IPv6 header, extension headers and the ports.
	DefaultCopyRange = 128
	// DefaultBatchSize is the size of the kernel's batches of messages
	// (NFULA_CFG_NLBUFSIZ).
	DefaultBatchSize = 64 << 10
	// DefaultQueueThreshold is the most messages in one batch
	// (NFULA_CFG_QTHRESH).
	DefaultQueueThreshold = 1024
	// DefaultFlushTimeout is how long the kernel holds a batch that is
	// not full (NFULA_CFG_TIMEOUT).
	DefaultFlushTimeout = 100 * time.Millisecond
)

// recvBufferSize is the room for one datagram: the kernel's largest batch
// and more.
const recvBufferSize = 2 * maxNlBufSiz

// Config configures a Listener.
type Config struct {
	// NetNS is an open file descriptor of the network namespace to listen
	// in; zero means the caller's namespace.
	NetNS int
	// Groups are the nflog groups to bind (nft `log group N`, iptables
	// --nflog-group N).
	Groups []uint16
	// Timeout bounds each configuration request; DefaultTimeout when 0.
	Timeout time.Duration
	// ReadBuffer is the socket receive buffer in bytes, set with
	// SO_RCVBUFFORCE; 0 keeps the default.
	ReadBuffer int
	// MaxReadBuffer, when larger than ReadBuffer, lets the listener double
	// its buffer, up to this size, each time packets are lost.
	MaxReadBuffer int
	// CopyRange is how many bytes of each packet the kernel copies;
	// DefaultCopyRange when 0.
	CopyRange int
	// BatchSize, QueueThreshold and FlushTimeout shape the kernel's
	// batches; the defaults when 0.
	BatchSize      int
	QueueThreshold int
	FlushTimeout   time.Duration
}

func (c *Config) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c *Config) copyRange() int {
	if c.CopyRange <= 0 {
		return DefaultCopyRange
	}
	return c.CopyRange
}

func (c *Config) batchSize() int {
	if c.BatchSize <= 0 {
		return DefaultBatchSize
	}
	return min(c.BatchSize, maxNlBufSiz)
}

func (c *Config) queueThreshold() int {
	if c.QueueThreshold <= 0 {
		return DefaultQueueThreshold
	}
	return c.QueueThreshold
}

func (c *Config) flushTimeout() time.Duration {
	if c.FlushTimeout <= 0 {
		return DefaultFlushTimeout
	}
	return max(c.FlushTimeout, 10*time.Millisecond)
}

// GroupStats are the counts of one group.
type GroupStats struct {
	Group uint16
	// Received is the number of packet messages decoded and handed to
	// Run's function.
	Received uint64
	// Lost is the number of packets the kernel logged to the group but
	// could not queue on the socket, from the gaps in the group's
	// sequence numbers.
	Lost uint64
}

// Stats are a Listener's counters.
type Stats struct {
	Groups []GroupStats
	// Datagrams is the number of datagrams received.
	Datagrams uint64
	// DecodeErrors is the number of messages or datagrams that could not
	// be decoded and were skipped.
	DecodeErrors uint64
	// Overruns is the number of times the kernel reported ENOBUFS (it
	// does not with NETLINK_NO_ENOBUFS, which the Listener sets).
	Overruns uint64
	// Drops is the kernel's count of datagrams (batches of messages) it
	// could not queue on the socket (SK_MEMINFO_DROPS).
	Drops uint64
	// ReadBuffer is the receive buffer the kernel granted, in bytes.
	ReadBuffer int
	// BufferGrowths counts how often the buffer was doubled after losses.
	BufferGrowths uint64
}

// group is the state of one bound group. next and the pending counts, of
// the datagram being decoded, are owned by Run.
type group struct {
	id                           uint16
	next                         uint32
	pendingReceived, pendingLost uint64
	received                     atomic.Uint64
	lost                         atomic.Uint64
}

// Listener receives the packets logged to its groups.
type Listener struct {
	cfg    Config
	fd     int
	reqSeq uint32
	buf    []byte
	// pending are datagrams received while the groups were being bound.
	pending [][]byte
	groups  []group
	packets []Packet
	// layout is where the attributes of the last packet message were,
	// for the next one.
	layout layout

	// Buffer growth, owned by Run.
	bufSize    int
	lastLost   uint64
	lastGrowth time.Time

	// file holds the socket once bound, for the network poller; rc
	// reads it with readFn, which leaves its result in readN and readErr.
	file    *os.File
	rc      syscall.RawConn
	readFn  func(fd uintptr) bool
	readN   int
	readErr error

	closed       atomic.Bool
	datagrams    atomic.Uint64
	decodeErrors atomic.Uint64
	overruns     atomic.Uint64
	growths      atomic.Uint64
}

// Listen opens a netlink socket in the configured namespace and binds the
// configured groups. A group bound by another socket fails with an error
// naming its holder; a nil cfg, like one without groups, is refused.
func Listen(cfg *Config) (*Listener, error) {
	if cfg == nil || len(cfg.Groups) == 0 {
		return nil, errNoGroups
	}
	l := &Listener{cfg: *cfg, buf: make([]byte, recvBufferSize), bufSize: cfg.ReadBuffer}
	l.cfg.Groups = append([]uint16(nil), cfg.Groups...)
	l.groups = make([]group, len(cfg.Groups))
	for i, g := range l.cfg.Groups {
		for _, h := range l.cfg.Groups[:i] {
			if g == h {
				return nil, fmt.Errorf("%w: %d", errGroupTwice, g)
			}
		}
		l.groups[i].id = g
	}
	fd, err := openSocket(&l.cfg)
	if err != nil {
		return nil, err
	}
	l.fd = fd
	if err := l.bind(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Run waits for datagrams in Go's network poller, not in a blocking
	// recvfrom: a goroutine parked there leaves its P idle, where one in
	// a blocking system call keeps the runtime's sysmon thread waking
	// every 20us to retake it, which cost more than decoding the packets.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("making the nflog socket non-blocking: %w", err)
	}
	l.file = os.NewFile(uintptr(fd), "nflog")
	rc, err := l.file.SyscallConn()
	if err != nil {
		l.file.Close()
		return nil, fmt.Errorf("nflog socket: %w", err)
	}
	l.rc = rc
	// One function for every read: a closure made per call would be
	// allocated per datagram.
	l.readFn = func(fd uintptr) bool {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&l.buf[0])),
			uintptr(len(l.buf)), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EAGAIN {
			return false // wait until the socket is readable
		}
		l.readN, l.readErr = int(n), nil
		if errno != 0 {
			l.readErr = errno
		}
		return true
	}
	l.packets = make([]Packet, 0, 256)
	return l, nil
}

// poll waits in the network poller until a datagram is received into
// l.buf and returns its whole length, which is larger than l.buf when it
// was cut short.
func (l *Listener) poll() (int, error) {
	if err := l.rc.Read(l.readFn); err != nil {
		return 0, err
	}
	return l.readN, l.readErr
}

// recv receives one datagram into l.buf, blocking, while the groups are
// bound, and returns its whole length, which is larger than l.buf when it
// was cut short.
func (l *Listener) recv() (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(l.fd), uintptr(unsafe.Pointer(&l.buf[0])),
		uintptr(len(l.buf)), unix.MSG_TRUNC, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Run receives packets until ctx is done or the socket fails for good, and
// calls fn with the packets of each datagram. The slice and the packets'
// prefixes are reused after fn returns. A message that does not decode is
// counted and skipped.
func (l *Listener) Run(ctx context.Context, fn func([]Packet)) error {
	if l.closed.Load() {
		return errClosed
	}
	for _, d := range l.pending {
		l.datagram(d, fn)
	}
	l.pending = nil
	// A deadline in the past wakes the poller when ctx is done; a new Run
	// starts without one.
	if err := l.file.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("nflog socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = l.file.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for ctx.Err() == nil {
		if l.closed.Load() {
			return errClosed
		}
		n, err := l.poll()
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, os.ErrClosed):
			return errClosed
		case errors.Is(err, unix.EINTR):
			l.grow(false)
			continue
		case errors.Is(err, unix.ENOBUFS):
			l.overruns.Add(1)
			l.grow(true)
			continue
		default:
			return fmt.Errorf("receiving nflog packets: %w", err)
		}
		if n > len(l.buf) {
			l.decodeErrors.Add(1)
			continue
		}
		l.datagram(l.buf[:n], fn)
		l.grow(false)
	}
	return nil
}

// datagram decodes the messages of one datagram, hands the packets to fn
// and counts them, and their sequence gaps, after fn returns.
func (l *Listener) datagram(b []byte, fn func([]Packet)) {
	l.datagrams.Add(1)
	l.packets = l.packets[:0]
	// The sequence numbers are accounted as the packets are decoded, while
	// each is in cache, into counts of the group's own that are added to
	// its atomic counters once fn has returned: one addition per group
	// and datagram, not per packet.
	var g *group
	for len(b) > 0 {
		m, rest, ok := nlwire.NextMessage(b)
		if !ok {
			l.decodeErrors.Add(1)
			break
		}
		b = rest
		if m.Type != typePacket {
			if m.Type >= 16 { // not a netlink control message
				l.decodeErrors.Add(1)
			}
			continue
		}
		n := len(l.packets)
		if n < cap(l.packets) {
			l.packets = l.packets[:n+1]
		} else {
			l.packets = append(l.packets, Packet{})
		}
		p := &l.packets[n]
		if err := l.layout.decode(m.Payload, p); err != nil {
			l.packets = l.packets[:n]
			l.decodeErrors.Add(1)
			continue
		}
		if g == nil || g.id != p.Group {
			if g = l.group(p.Group); g == nil {
				continue
			}
		}
		g.pendingReceived++
		if p.HasSeq {
			// The gap, modulo 2^32; a number behind the expected one
			// (never seen from the kernel) counts no loss.
			if gap := p.Seq - g.next; gap > 0 && gap < 1<<31 {
				g.pendingLost += uint64(gap)
			}
			if p.Seq-g.next < 1<<31 {
				g.next = p.Seq + 1
			}
		}
	}
	if len(l.packets) > 0 {
		fn(l.packets)
	}
	for i := range l.groups {
		if g := &l.groups[i]; g.pendingReceived != 0 {
			// Lost before received: Stats reads them the other way
			// round, so it never sees a gap without its packet.
			g.lost.Add(g.pendingLost)
			g.received.Add(g.pendingReceived)
			g.pendingLost, g.pendingReceived = 0, 0
		}
	}
}

// group returns the state of group id; nil if it is not one of ours.
func (l *Listener) group(id uint16) *group {
	for i := range l.groups {
		if l.groups[i].id == id {
			return &l.groups[i]
		}
	}
	return nil
}

// grow doubles the receive buffer, up to its maximum, when packets have
// been lost since the last check. Unless overrun is true it grows the
// buffer at most every 100ms. Only a growth starts those 100ms, not a
// check that found no loss: a loss revealed by the datagram after such a
// check, with no datagram after it, still grows the buffer.
func (l *Listener) grow(overrun bool) {
	if l.cfg.MaxReadBuffer <= l.bufSize || (!overrun && time.Since(l.lastGrowth) < 100*time.Millisecond) {
		return
	}
	var lost uint64
	for i := range l.groups {
		lost += l.groups[i].lost.Load()
	}
	if lost == l.lastLost && !overrun {
		return
	}
	l.lastLost = lost
	l.lastGrowth = time.Now()
	size := min(2*max(l.bufSize, 1<<20), l.cfg.MaxReadBuffer)
	if err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
		return
	}
	l.bufSize = size
	l.growths.Add(1)
}

// Stats returns the Listener's counters, with the kernel's drop count and
// buffer size read now.
func (l *Listener) Stats() (Stats, error) {
	s := Stats{
		Groups:        make([]GroupStats, len(l.groups)),
		Datagrams:     l.datagrams.Load(),
		DecodeErrors:  l.decodeErrors.Load(),
		Overruns:      l.overruns.Load(),
		BufferGrowths: l.growths.Load(),
	}
	for i := range l.groups {
		g := &l.groups[i]
		// Lost before Received: a reader never sees a gap without the
		// packet that revealed it.
		lost := g.lost.Load()
		s.Groups[i] = GroupStats{Group: g.id, Lost: lost, Received: g.received.Load()}
	}
	if l.closed.Load() {
		return s, errClosed
	}
	var mem [9]uint32
	size := uint32(unsafe.Sizeof(mem))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(l.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		return s, fmt.Errorf("reading the socket's drop counter: %w", errno)
	}
	s.Drops = uint64(mem[8]) // SK_MEMINFO_DROPS
	rb, err := unix.GetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return s, fmt.Errorf("reading the receive buffer size: %w", err)
	}
	s.ReadBuffer = rb
	return s, nil
}

// Groups returns the groups the Listener bound.
func (l *Listener) Groups() []uint16 {
	return append([]uint16(nil), l.cfg.Groups...)
}

// Close closes the socket, which unbinds its groups. Call it after Run has
// returned.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	if l.file != nil {
		return l.file.Close()
	}
	return unix.Close(l.fd)
}
