package ctnl

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring ABI (include/uapi/linux/io_uring.h), the part the receive
// ring uses. The system call numbers are the same on every architecture.
const (
	sysIOURingSetup    = 425
	sysIOURingEnter    = 426
	sysIOURingRegister = 427

	ioringSetupCQSize       = 1 << 3
	ioringSetupSubmitAll    = 1 << 7
	ioringSetupSingleIssuer = 1 << 12
	ioringSetupDeferTaskrun = 1 << 13

	ioringFeatSingleMmap = 1 << 0
	ioringFeatNoDrop     = 1 << 1
	ioringFeatExtArg     = 1 << 8

	// The completion ring shares the mapping of the submission ring
	// (IORING_FEAT_SINGLE_MMAP): no IORING_OFF_CQ_RING mapping.
	ioringOffSQRing = 0
	ioringOffSQEs   = 0x10000000

	ioringEnterGetEvents = 1 << 0
	ioringEnterExtArg    = 1 << 3

	ioringRegisterPbufRing = 22

	ioringOpRecv         = 27
	ioringOpAsyncCancel  = 14
	ringCancelUserData   = 2
	iosqeBufferSelect    = 1 << 5
	ioringRecvMultishot  = 1 << 1
	ioringCQEFBuffer     = 1 << 0
	ioringCQEFMore       = 1 << 1
	ioringCQEBufferShift = 16
	sqeSize              = 64
	cqeSize              = 16
	pbufEntrySize        = 16
	ringRecvUserData     = 1
	ringSQEntries        = 4
)

// ringStride is the distance between two receive buffers: a slot and one
// cache line. Buffers 4 KiB apart would all map to the same few cache sets,
// and the few lines of each datagram would evict each other.
const ringStride = slotSize + 64

// ring is an io_uring multishot receive of one socket: recvRing, or a
// test's fake (see socket). Run's loop calls arm, enter and reap once per
// round; reap calls its function once per completion.
type ring interface {
	// arm queues a multishot receive of the socket, unless one is active.
	arm()
	// enter submits what arm queued and waits until at least want
	// completions are ready or timeout has passed.
	enter(want uint32, timeout time.Duration) error
	// reap calls fn with each ready completion and the datagram it carries
	// (nil when it carries none), and returns the number of completions.
	// The datagram is valid until fn returns.
	reap(fn func(c completion, data []byte)) int
	// close ends the receive and releases the ring.
	close()
}

var _ ring = (*recvRing)(nil)

// runRing receives through an io_uring multishot receive. It fails with
// errRingUnavailable wrapped when the ring cannot be set up.
func (l *Listener) runRing(ctx context.Context, fn func([]Flow)) error {
	// The ring serves only the thread that made it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := l.sock.newRing(ringSlots)
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
		case errno == unix.ENOBUFS && c.outOfBuffers:
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
	// linger is the wait after a partial batch, adapted to the rate at
	// which events come (see nextLinger); lingered tells whether the
	// round waited it.
	linger, lingered := l.linger, false
	for ctx.Err() == nil {
		if l.closed.Load() {
			return errListenerClosed
		}
		r.arm()
		t0 := time.Now()
		if err := r.enter(wait, timeout); err != nil {
			return err
		}
		elapsed := time.Since(t0)
		n := r.reap(handle)
		l.deliver(fn)
		if fail != nil {
			if l.closed.Load() {
				return errListenerClosed
			}
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
		if lingered {
			linger = nextLinger(l.linger, elapsed, n, l.batch)
		}
		wait, timeout, lingered = 1, 250*time.Millisecond, false
		if n > 0 && n < l.batch && l.linger > 0 && !l.queued() {
			wait, timeout, lingered = uint32(l.batch), linger, true
		}
	}
	return nil
}

// maxLingerFactor bounds the adapted linger: at most this many times the
// configured one.
const maxLingerFactor = 5

// nextLinger returns the linger for the next wait of the io_uring receive,
// after a wait of elapsed that gathered n events for a batch of batch:
// long enough for a batch at the rate they came, between base and
// maxLingerFactor times base. Where events come densely, it stays at
// base: a fixed 10 ms linger instead of 2 ms cost a burst of 1,000,000
// events 29% more, and 38% more when a filter refused 10% of them
// (BENCHMARKS.md; the waits seemed to last their whole linger, piling
// more events than a batch). Where they come sparse (most refused by a
// filter in the kernel), a short linger blocks the listener after nearly
// every batch, and each block makes the Go runtime's monitor wake every
// 20 us for a millisecond or more: a third of the listener's processor
// time in a burst whose filter refused 90%. A non-positive base is
// returned as it is.
func nextLinger(base, elapsed time.Duration, n, batch int) time.Duration {
	if base <= 0 {
		return base
	}
	if n <= 0 {
		return maxLingerFactor * base
	}
	next := time.Duration(float64(elapsed) * float64(batch) / float64(n))
	return min(max(next, base), maxLingerFactor*base)
}

// ioURingParams is struct io_uring_params.
type ioURingParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqringOffsets is struct io_sqring_offsets.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqringOffsets is struct io_cqring_offsets.
type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// pbufReg is struct io_uring_buf_reg.
type pbufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// geteventsArg is struct io_uring_getevents_arg.
type geteventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

// recvRing receives the datagrams of one socket through io_uring: a
// multishot receive into a ring of provided buffers, so that the kernel
// queues one completion per datagram without a system call, a message header
// or an iovec per datagram. It must be used by the thread that made it.
type recvRing struct {
	fd, sock int

	ringMem, sqeMem []byte // the rings (one mapping) and the entries
	sqTail, sqMask  *uint32
	sqArray         unsafe.Pointer
	cqHead, cqTail  *uint32
	cqMask          uint32
	cqes            unsafe.Pointer

	// The provided buffers: slots of slotSize bytes and the ring that
	// hands them to the kernel.
	bufRing, bufData []byte
	slots            uint16
	bufTail          uint16
	// held counts the published buffers the kernel has not returned; a
	// receive that fails with ENOBUFS while it is 0 ran out of buffers,
	// not of socket room. pending counts buffers provided but not yet
	// published.
	held, pending int

	// armed is set when an entry is queued but not yet submitted;
	// receiving while a multishot receive is active.
	armed, receiving bool

	// ts and arg are io_uring_enter's wait argument. They live here, in
	// memory that does not move, as the kernel gets their addresses as
	// integers.
	ts  unix.Timespec
	arg geteventsArg
}

// newRecvRing sets up a ring for sock with the given number of buffer slots
// (a power of two). It fails with errRingUnavailable wrapped when the kernel
// lacks what the ring needs (io_uring disabled or filtered, a kernel older
// than 6.1).
func newRecvRing(sock, slots int) (r *recvRing, err error) {
	p := ioURingParams{
		flags:     ioringSetupCQSize | ioringSetupSubmitAll | ioringSetupSingleIssuer | ioringSetupDeferTaskrun,
		cqEntries: uint32(2 * slots),
	}
	fd, _, errno := unix.Syscall(sysIOURingSetup, ringSQEntries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %w", errRingUnavailable, errno)
	}
	r = &recvRing{fd: int(fd), sock: sock, slots: uint16(slots)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	const need = ioringFeatSingleMmap | ioringFeatNoDrop | ioringFeatExtArg
	if p.features&need != need {
		return nil, fmt.Errorf("%w: kernel lacks io_uring features %#x", errRingUnavailable, need&^p.features)
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*cqeSize
	ringSize := max(sqSize, cqSize)
	if r.ringMem, err = unix.Mmap(r.fd, ioringOffSQRing, ringSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mapping the io_uring rings: %w", err)
	}
	if r.sqeMem, err = unix.Mmap(r.fd, ioringOffSQEs, int(p.sqEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mapping the io_uring submission entries: %w", err)
	}
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&r.ringMem[off]) }
	r.sqTail = (*uint32)(at(p.sqOff.tail))
	r.sqMask = (*uint32)(at(p.sqOff.ringMask))
	r.sqArray = at(p.sqOff.array)
	r.cqHead = (*uint32)(at(p.cqOff.head))
	r.cqTail = (*uint32)(at(p.cqOff.tail))
	r.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	r.cqes = at(p.cqOff.cqes)

	anon := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
	if r.bufRing, err = unix.Mmap(-1, 0, slots*pbufEntrySize, unix.PROT_READ|unix.PROT_WRITE, anon|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mapping the buffer ring: %w", err)
	}
	if r.bufData, err = unix.Mmap(-1, 0, slots*ringStride, unix.PROT_READ|unix.PROT_WRITE, anon); err != nil {
		return nil, fmt.Errorf("mapping the receive buffers: %w", err)
	}
	reg := pbufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&r.bufRing[0]))), ringEntries: uint32(slots)}
	if _, _, errno := unix.Syscall6(sysIOURingRegister, uintptr(r.fd), ioringRegisterPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0); errno != 0 {
		return nil, fmt.Errorf("%w: registering the buffer ring: %w", errRingUnavailable, errno)
	}
	for bid := range slots {
		r.provide(uint16(bid))
	}
	r.publish()
	return r, nil
}

// provide queues buffer bid for the kernel; publish makes it visible.
func (r *recvRing) provide(bid uint16) {
	e := unsafe.Pointer(&r.bufRing[int(r.bufTail&(r.slots-1))*pbufEntrySize])
	*(*uint64)(e) = uint64(uintptr(unsafe.Pointer(&r.bufData[int(bid)*ringStride])))
	*(*uint32)(unsafe.Add(e, 8)) = slotSize
	*(*uint16)(unsafe.Add(e, 12)) = bid
	r.bufTail++
	r.pending++
}

// publish stores the buffer ring's tail. The tail is the last 16 bits of
// the first entry; it is stored with the entry's buffer id as one atomic
// 32-bit word, so the kernel sees the entries written before it.
func (r *recvRing) publish() {
	w := (*uint32)(unsafe.Pointer(&r.bufRing[12]))
	bid0 := *(*uint16)(unsafe.Pointer(&r.bufRing[12]))
	atomic.StoreUint32(w, uint32(r.bufTail)<<16|uint32(bid0))
	r.held += r.pending
	r.pending = 0
}

// sqe returns the next submission entry, cleared.
func (r *recvRing) sqe() ([]byte, func()) {
	tail := *r.sqTail
	idx := tail & atomic.LoadUint32(r.sqMask)
	sqe := r.sqeMem[int(idx)*sqeSize : int(idx+1)*sqeSize]
	clear(sqe)
	return sqe, func() {
		*(*uint32)(unsafe.Add(r.sqArray, 4*int(idx))) = idx
		atomic.StoreUint32(r.sqTail, tail+1)
		r.armed = true
	}
}

// arm queues a multishot receive of the socket, unless one is active.
func (r *recvRing) arm() {
	if r.receiving {
		return
	}
	sqe, queue := r.sqe()
	sqe[0] = ioringOpRecv
	sqe[1] = iosqeBufferSelect
	*(*uint16)(unsafe.Pointer(&sqe[2])) = ioringRecvMultishot
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(r.sock)
	// MSG_TRUNC makes a netlink receive return the datagram's full
	// length, so that one larger than its slot is seen as truncated.
	*(*uint32)(unsafe.Pointer(&sqe[28])) = unix.MSG_TRUNC
	*(*uint64)(unsafe.Pointer(&sqe[32])) = ringRecvUserData
	*(*uint16)(unsafe.Pointer(&sqe[40])) = 0 // buffer group
	queue()
	r.receiving = true
}

// cancel queues the cancellation of the multishot receive.
func (r *recvRing) cancel() {
	sqe, queue := r.sqe()
	sqe[0] = ioringOpAsyncCancel
	*(*int32)(unsafe.Pointer(&sqe[4])) = -1
	*(*uint64)(unsafe.Pointer(&sqe[16])) = ringRecvUserData
	*(*uint64)(unsafe.Pointer(&sqe[32])) = ringCancelUserData
	queue()
}

// enter submits what arm or cancel queued and waits until at least want
// completions are ready or timeout has passed.
func (r *recvRing) enter(want uint32, timeout time.Duration) error {
	var submit uintptr
	if r.armed {
		submit = 1
	}
	r.ts = unix.NsecToTimespec(int64(timeout))
	r.arg = geteventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
	_, _, errno := unix.Syscall6(sysIOURingEnter, uintptr(r.fd), submit, uintptr(want),
		ioringEnterGetEvents|ioringEnterExtArg, uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
	r.armed = false
	switch errno {
	case 0, unix.ETIME, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		return nil
	}
	return fmt.Errorf("io_uring_enter: %w", errno)
}

// completion is one completion of the ring.
type completion struct {
	userData uint64
	res      int32
	flags    uint32
	// outOfBuffers is set on a completion that carries no buffer when the
	// kernel held none of the ring's buffers: an ENOBUFS then means that
	// the ring ran out of buffers, not that the socket overran.
	outOfBuffers bool
}

// last reports whether c ends the multishot receive.
func (c completion) last() bool {
	return c.userData == ringRecvUserData && c.flags&ioringCQEFMore == 0
}

// reap calls fn with each ready completion and the datagram it carries
// (nil when it carries none), then hands the buffers back to the kernel. It
// returns the number of completions.
func (r *recvRing) reap(fn func(c completion, data []byte)) int {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail)
	n := int(tail - head)
	for ; head != tail; head++ {
		cqe := unsafe.Add(r.cqes, int(head&r.cqMask)*cqeSize)
		c := completion{
			userData: *(*uint64)(cqe),
			res:      *(*int32)(unsafe.Add(cqe, 8)),
			flags:    *(*uint32)(unsafe.Add(cqe, 12)),
		}
		if c.last() {
			r.receiving = false
		}
		var data []byte
		if c.flags&ioringCQEFBuffer != 0 {
			bid := uint16(c.flags >> ioringCQEBufferShift)
			r.held--
			if c.res > 0 {
				off := int(bid) * ringStride
				data = r.bufData[off : off+min(int(c.res), slotSize)]
			}
			fn(c, data)
			r.provide(bid)
		} else {
			c.outOfBuffers = r.held == 0
			fn(c, nil)
		}
	}
	atomic.StoreUint32(r.cqHead, head)
	if n > 0 {
		r.publish()
	}
	return n
}

// close cancels the receive, waits up to a second for the kernel to end it,
// and releases the ring. Should the receive not end, the buffers stay
// mapped, so that the kernel can never write into memory reused since.
func (r *recvRing) close() {
	if r.receiving && r.fd >= 0 {
		r.cancel()
		for deadline := time.Now().Add(time.Second); r.receiving && time.Now().Before(deadline); {
			if r.enter(1, 100*time.Millisecond) != nil {
				break
			}
			r.reap(func(completion, []byte) {})
		}
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
	if r.receiving {
		r.bufRing, r.bufData = nil, nil
	}
	for _, m := range []*[]byte{&r.sqeMem, &r.ringMem, &r.bufRing, &r.bufData} {
		if *m != nil {
			unix.Munmap(*m)
			*m = nil
		}
	}
}
