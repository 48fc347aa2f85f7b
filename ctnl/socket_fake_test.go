package ctnl

// A fake kernel behind the socket seam: scripted receives (datagrams, or an
// error such as ENOBUFS), a drop counter, a receive buffer, io_uring rings
// that can be refused or fail, and answers to the Dumper's requests.

import (
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netlinktest"
)

// fakePoll is how long a fake receive waits for a step before it returns
// EAGAIN, as a real one does after its receive timeout (250ms).
const fakePoll = 2 * time.Millisecond

// errOutOfBuffers, as a step's error, is an ENOBUFS completion of a fake
// ring that held no buffer: the ring ran out of buffers, the socket did not
// overrun. A recvmmsg receive returns it as ENOBUFS.
var errOutOfBuffers = errors.New("fake ring out of buffers")

// step is what one receive call returns: up to a batch of datagrams, or an
// error. drops is added to the socket's drop counter as the step is taken,
// so that an overrun and the drops it stands for arrive together.
type step struct {
	datagrams [][]byte
	err       error
	drops     uint32
}

// fakeSocket is a socket whose kernel is a script.
type fakeSocket struct {
	wake   chan struct{}
	closed chan struct{}

	mu       sync.Mutex
	steps    []step
	drops    uint32
	rcvbuf   int
	setBufs  []int   // the sizes setReadBuffer was called with
	ringErrs []error // what the next newRing calls fail with; nil succeeds
	rings    int     // newRing calls
	arms     int     // multishot receives armed, over every ring
	open     int     // rings not closed
	answer   func(req []byte) []step
	requests [][]byte
	closes   int
	filters  []*EventFilter // what setFilter was called with
}

var _ socket = (*fakeSocket)(nil)

func newFakeSocket() *fakeSocket {
	return &fakeSocket{wake: make(chan struct{}, 1), closed: make(chan struct{}), rcvbuf: 212992}
}

// push queues steps and wakes a waiting receive.
func (s *fakeSocket) push(steps ...step) {
	s.mu.Lock()
	s.steps = append(s.steps, steps...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pending returns how many steps no receive has taken yet.
func (s *fakeSocket) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.steps)
}

// take returns the next step, waiting up to wait for one; false when none
// came. After close it fails with EBADF; a receive waiting when the socket
// is closed returns EAGAIN, as a real one does at its timeout.
func (s *fakeSocket) take(wait time.Duration) (step, bool, error) {
	select {
	case <-s.closed:
		return step{}, false, unix.EBADF
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		if len(s.steps) > 0 {
			st := s.steps[0]
			s.steps = s.steps[1:]
			s.drops += st.drops
			s.mu.Unlock()
			return st, true, nil
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.closed:
			return step{}, false, nil
		case <-t.C:
			return step{}, false, nil
		}
	}
}

// unshift puts back the datagrams a receive had no room for, as the next
// step.
func (s *fakeSocket) unshift(datagrams [][]byte) {
	if len(datagrams) == 0 {
		return
	}
	s.mu.Lock()
	s.steps = append([]step{{datagrams: datagrams}}, s.steps...)
	s.mu.Unlock()
}

func stepErr(err error) error {
	if errors.Is(err, errOutOfBuffers) {
		return unix.ENOBUFS
	}
	return err
}

func (s *fakeSocket) recvmmsg(msgs []mmsghdr) (int, error) {
	st, ok, err := s.take(fakePoll)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, unix.EAGAIN
	case st.err != nil:
		return 0, stepErr(st.err)
	}
	n := min(len(st.datagrams), len(msgs))
	for i, d := range st.datagrams[:n] {
		m := &msgs[i]
		buf := unsafe.Slice(m.hdr.Iov.Base, m.hdr.Iov.Len)
		m.len = uint32(copy(buf, d))
		if len(d) > len(buf) {
			m.hdr.Flags |= unix.MSG_TRUNC
		}
	}
	s.unshift(st.datagrams[n:])
	return n, nil
}

func (s *fakeSocket) recvfrom(b []byte) (int, error) {
	st, ok, err := s.take(fakePoll)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, unix.EAGAIN
	case st.err != nil:
		return 0, stepErr(st.err)
	case len(st.datagrams) == 0:
		return 0, unix.EAGAIN
	}
	s.unshift(st.datagrams[1:])
	return copy(b, st.datagrams[0]), nil
}

func (s *fakeSocket) sendto(b []byte) error {
	s.mu.Lock()
	s.requests = append(s.requests, append([]byte(nil), b...))
	answer := s.answer
	s.mu.Unlock()
	if answer != nil {
		s.push(answer(b)...)
	}
	return nil
}

func (s *fakeSocket) meminfo() ([skMeminfoVars]uint32, error) {
	var mem [skMeminfoVars]uint32
	s.mu.Lock()
	defer s.mu.Unlock()
	mem[skMeminfoDrops] = s.drops
	if len(s.steps) > 0 {
		mem[skMeminfoRmemAlloc] = 1
	}
	return mem, nil
}

func (s *fakeSocket) setReadBuffer(bytes int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setBufs = append(s.setBufs, bytes)
	s.rcvbuf = bytes
	return nil
}

func (s *fakeSocket) readBuffer() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcvbuf, nil
}

func (s *fakeSocket) setFilter(f *EventFilter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filters = append(s.filters, f)
	return nil
}

func (s *fakeSocket) newRing(slots int) (ring, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rings++
	if len(s.ringErrs) > 0 {
		err := s.ringErrs[0]
		s.ringErrs = s.ringErrs[1:]
		if err != nil {
			return nil, err
		}
	}
	s.open++
	return &fakeRing{s: s}, nil
}

func (s *fakeSocket) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes++
	if s.closes == 1 {
		close(s.closed)
	}
	return nil
}

// counts returns newRing calls, receives armed, rings open and closes.
func (s *fakeSocket) counts() (rings, arms, open, closes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rings, s.arms, s.open, s.closes
}

// fakeRing is a ring over a fakeSocket's script: each round takes one step;
// a datagram is a completion with a buffer, an error one that ends the
// multishot receive.
type fakeRing struct {
	s         *fakeSocket
	receiving bool
	ready     []fakeCompletion
}

type fakeCompletion struct {
	c    completion
	data []byte
}

func (r *fakeRing) arm() {
	if r.receiving {
		return
	}
	r.receiving = true
	r.s.mu.Lock()
	r.s.arms++
	r.s.mu.Unlock()
}

func (r *fakeRing) enter(want uint32, timeout time.Duration) error {
	if !r.receiving {
		return nil
	}
	st, ok, err := r.s.take(min(timeout, fakePoll))
	if err != nil || !ok {
		return nil // io_uring_enter waits on the ring, not the socket
	}
	if st.err != nil {
		var c completion
		c.userData = ringRecvUserData
		var errno unix.Errno
		if !errors.As(stepErr(st.err), &errno) {
			errno = unix.EIO
		}
		c.res = -int32(errno)
		c.outOfBuffers = errors.Is(st.err, errOutOfBuffers)
		r.ready = append(r.ready, fakeCompletion{c: c})
		return nil
	}
	for _, d := range st.datagrams {
		c := completion{userData: ringRecvUserData, res: int32(len(d)), flags: ioringCQEFBuffer | ioringCQEFMore}
		r.ready = append(r.ready, fakeCompletion{c: c, data: d[:min(len(d), slotSize)]})
	}
	return nil
}

func (r *fakeRing) reap(fn func(c completion, data []byte)) int {
	n := len(r.ready)
	for _, fc := range r.ready {
		if fc.c.last() {
			r.receiving = false
		}
		fn(fc.c, fc.data)
	}
	r.ready = r.ready[:0]
	return n
}

func (r *fakeRing) close() {
	r.s.mu.Lock()
	r.s.open--
	r.s.mu.Unlock()
}

// datagram writes messages into one datagram, as the kernel does.
func datagram(msgs ...netlink.Message) []byte {
	return netlinktest.Datagram(msgs...)
}

// fakeListener makes a Listener of cfg over s, as Listen does over a real
// socket.
func fakeListener(t *testing.T, cfg ListenConfig, s *fakeSocket) *Listener {
	t.Helper()
	batch := cfg.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	l, err := newListener(cfg, batch, s)
	if err != nil {
		t.Fatalf("newListener: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
