package ctnl

// The Listener's receive loops over a fake socket (socket_fake_test.go):
// what the kernel tests cannot force at will, root-free.

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// receiveMethods are the receive loops every test here runs: a fake socket
// serves both.
var receiveMethods = []Method{MethodIOURing, MethodRecvmmsg}

// destroyEvent is a DESTROY event of a TCP flow whose source port is port.
func destroyEvent(t testing.TB, port uint16) netlink.Message {
	return destroyMessage(t, netfilter.ProtoIPv4, tuple(ctaTupleOrig, cli4, srv4, 6, port, 443))
}

// events is one datagram of n DESTROY events, with source ports from
// first on.
func events(t testing.TB, first uint16, n int) []byte {
	msgs := make([]netlink.Message, n)
	for i := range msgs {
		msgs[i] = destroyEvent(t, first+uint16(i))
	}
	return datagram(msgs...)
}

// running is a Listener's Run in its own goroutine, recording the source
// ports of the flows it delivers.
type running struct {
	t      *testing.T
	l      *Listener
	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex
	ports []uint16
}

func start(t *testing.T, l *Listener) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, l: l, cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- l.Run(ctx, func(fs []Flow) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for i := range fs {
				r.ports = append(r.ports, fs[i].Orig.SPort)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context's end")
		}
	})
	return r
}

// received returns the source ports of the flows delivered so far.
func (r *running) received() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint16(nil), r.ports...)
}

// stop ends Run and returns its error.
func (r *running) stop() error {
	r.t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatal("Run did not return within 5s of its context's end")
		return nil
	}
}

// waitFor waits up to 5s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitEvents waits until the Listener has counted n events and the fake
// kernel has nothing left to send.
func waitEvents(t *testing.T, l *Listener, s *fakeSocket, n uint64) {
	t.Helper()
	waitFor(t, "the events", func() bool { return l.events.Load() >= n && s.pending() == 0 })
}

func wantPorts(t *testing.T, got []uint16, first uint16, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("received %d flows, want %d", len(got), n)
	}
	for i, p := range got {
		if p != first+uint16(i) {
			t.Fatalf("flow %d has source port %d, want %d (in order)", i, p, first+uint16(i))
		}
	}
}

// TestListenerReceives: every event of every datagram arrives, in order,
// however the receives split them, and Drained moves on once the socket is
// empty.
func TestListenerReceives(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newFakeSocket()
			l := fakeListener(t, ListenConfig{Method: m, Batch: 8, Linger: -1}, s)
			if got, why := l.Method(); got != m || why != nil {
				t.Fatalf("Method() = %s, %v; want %s", got, why, m)
			}
			if !l.Drained().IsZero() {
				t.Fatal("Drained is set before Run")
			}
			// 20 datagrams of 5 events in one receive: more than a
			// batch of datagrams (recvmmsg) and of flows (io_uring).
			var ds [][]byte
			for i := range 20 {
				ds = append(ds, events(t, uint16(1000+5*i), 5))
			}
			s.push(step{datagrams: ds})
			r := start(t, l)
			waitEvents(t, l, s, 100)
			waitFor(t, "Drained", func() bool { return !l.Drained().IsZero() })
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			wantPorts(t, r.received(), 1000, 100)
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Events != 100 || st.DecodeErrors != 0 || st.Overruns != 0 || st.Drops != 0 || st.Method != m {
				t.Errorf("Stats() = %+v, want 100 events, no errors, method %s", st, m)
			}
		})
	}
}

// TestListenerOverrun: an ENOBUFS is counted, the drops the kernel counted
// are reported (lost, except in reliable mode), and receiving goes on; the
// io_uring receive that the error ended is armed again.
func TestListenerOverrun(t *testing.T) {
	for _, m := range receiveMethods {
		for _, reliable := range []bool{false, true} {
			name := string(m)
			if reliable {
				name += "/reliable"
			}
			t.Run(name, func(t *testing.T) {
				s := newFakeSocket()
				l := fakeListener(t, ListenConfig{Method: m, Reliable: reliable, Linger: -1}, s)
				s.push(
					step{datagrams: [][]byte{events(t, 1, 3)}},
					step{err: unix.ENOBUFS, drops: 7},
					step{datagrams: [][]byte{events(t, 4, 2)}},
					step{err: unix.ENOBUFS, drops: 5},
					step{datagrams: [][]byte{events(t, 6, 1)}},
				)
				r := start(t, l)
				waitEvents(t, l, s, 6)
				if err := r.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				wantPorts(t, r.received(), 1, 6)
				st, err := l.Stats()
				if err != nil {
					t.Fatal(err)
				}
				wantLost := uint64(12)
				if reliable {
					wantLost = 0
				}
				if st.Events != 6 || st.Overruns != 2 || st.Drops != 12 || st.Lost != wantLost {
					t.Errorf("Stats() = %+v, want 6 events, 2 overruns, 12 drops, %d lost", st, wantLost)
				}
				if _, arms, _, _ := s.counts(); m == MethodIOURing && arms != 3 {
					t.Errorf("the multishot receive was armed %d times, want 3 (once, then after each ENOBUFS)", arms)
				}
			})
		}
	}
}

// TestListenerRingOutOfBuffers: an ENOBUFS completion while the ring held
// no buffer means the ring ran short, not the socket: no overrun, and the
// receive is armed again.
func TestListenerRingOutOfBuffers(t *testing.T) {
	s := newFakeSocket()
	l := fakeListener(t, ListenConfig{Method: MethodIOURing, MaxReadBuffer: 8 << 20, Linger: -1}, s)
	s.push(
		step{datagrams: [][]byte{events(t, 1, 2)}},
		step{err: errOutOfBuffers},
		step{datagrams: [][]byte{events(t, 3, 2)}},
	)
	r := start(t, l)
	waitEvents(t, l, s, 4)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantPorts(t, r.received(), 1, 4)
	st, _ := l.Stats()
	if st.Overruns != 0 || st.BufferGrowths != 0 {
		t.Errorf("Stats() = %+v, want no overrun and no growth", st)
	}
	if _, arms, _, _ := s.counts(); arms != 2 {
		t.Errorf("armed %d times, want 2", arms)
	}
}

// TestListenerBufferGrowth: after an overrun with new drops the receive
// buffer doubles (from at least 1 MiB), up to MaxReadBuffer and no
// further; an overrun without new drops, or a listener without
// MaxReadBuffer, does not grow it.
func TestListenerBufferGrowth(t *testing.T) {
	tests := []struct {
		name     string
		buf, max int
		steps    []step
		want     []int // the sizes set, in order
	}{{
		name: "doubles up to the cap",
		buf:  1 << 20, max: 5 << 20,
		steps: []step{{err: unix.ENOBUFS, drops: 1}, {err: unix.ENOBUFS, drops: 1}, {err: unix.ENOBUFS, drops: 1}, {err: unix.ENOBUFS, drops: 1}},
		want:  []int{2 << 20, 4 << 20, 5 << 20},
	}, {
		name: "from 1 MiB when the buffer is the default",
		buf:  0, max: 16 << 20,
		steps: []step{{err: unix.ENOBUFS, drops: 3}},
		want:  []int{2 << 20},
	}, {
		name: "not without new drops",
		buf:  1 << 20, max: 16 << 20,
		steps: []step{{err: unix.ENOBUFS, drops: 2}, {err: unix.ENOBUFS}, {err: unix.ENOBUFS}},
		want:  []int{2 << 20},
	}, {
		name:  "never without MaxReadBuffer",
		buf:   1 << 20,
		steps: []step{{err: unix.ENOBUFS, drops: 2}, {err: unix.ENOBUFS, drops: 2}},
	}}
	for _, m := range receiveMethods {
		for _, tt := range tests {
			t.Run(string(m)+"/"+tt.name, func(t *testing.T) {
				s := newFakeSocket()
				l := fakeListener(t, ListenConfig{Method: m, ReadBuffer: tt.buf, MaxReadBuffer: tt.max, Linger: -1}, s)
				s.push(tt.steps...)
				s.push(step{datagrams: [][]byte{events(t, 1, 1)}})
				r := start(t, l)
				waitEvents(t, l, s, 1)
				if err := r.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				s.mu.Lock()
				got := append([]int(nil), s.setBufs...)
				s.mu.Unlock()
				if !equalInts(got, tt.want) {
					t.Fatalf("receive buffer set to %v, want %v", got, tt.want)
				}
				st, _ := l.Stats()
				if st.BufferGrowths != uint64(len(tt.want)) || st.Overruns != uint64(len(tt.steps)) {
					t.Errorf("Stats() = %+v, want %d growths and %d overruns", st, len(tt.want), len(tt.steps))
				}
				if len(tt.want) > 0 && st.ReadBuffer != tt.want[len(tt.want)-1] {
					t.Errorf("Stats().ReadBuffer = %d, want %d", st.ReadBuffer, tt.want[len(tt.want)-1])
				}
			})
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestListenerGrowsWithoutOverrun: with NETLINK_NO_ENOBUFS the kernel
// reports no overrun, only drops; the listener looks at them at most every
// 100ms while it receives, and grows the buffer.
func TestListenerGrowsWithoutOverrun(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newFakeSocket()
			l := fakeListener(t, ListenConfig{Method: m, ReadBuffer: 1 << 20, MaxReadBuffer: 4 << 20, NoENOBUFS: true, Linger: -1}, s)
			l.lastCheck = time.Now().Add(-time.Second)
			s.push(step{datagrams: [][]byte{events(t, 1, 1)}, drops: 9})
			r := start(t, l)
			waitEvents(t, l, s, 1)
			waitFor(t, "a growth", func() bool { return l.growths.Load() == 1 })
			// Later drops are seen within 100ms.
			s.push(step{datagrams: [][]byte{events(t, 2, 1)}, drops: 1})
			time.Sleep(110 * time.Millisecond)
			s.push(step{datagrams: [][]byte{events(t, 3, 1)}})
			waitFor(t, "a second growth", func() bool { return l.growths.Load() == 2 })
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			st, _ := l.Stats()
			if st.Overruns != 0 || st.ReadBuffer != 4<<20 || st.Drops != 10 {
				t.Errorf("Stats() = %+v, want no overrun, a 4 MiB buffer, 10 drops", st)
			}
		})
	}
}

// TestListenerDecodeErrors: what does not decode is counted and skipped,
// and the events around it arrive; netlink control messages are not
// errors.
func TestListenerDecodeErrors(t *testing.T) {
	noop := netlink.Message{Header: netlink.Header{Type: netlink.Noop}}
	newEvent := destroyEvent(t, 99)
	newEvent.Header.Type = netlink.HeaderType(subsysCT<<8 | msgCTNew)
	noTuple := destroyMessage(t, netfilter.ProtoIPv4, u32(ctaStatus, 1))
	// A datagram whose second message claims more bytes than there are:
	// the rest of the datagram cannot be split and is skipped.
	garbled := events(t, 3, 2)
	binary.NativeEndian.PutUint32(garbled[len(garbled)/2:], 1<<16)
	big := datagram(destroyEvent(t, 100), netlink.Message{Data: make([]byte, slotSize)})

	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newFakeSocket()
			l := fakeListener(t, ListenConfig{Method: m, Linger: -1}, s)
			s.push(step{datagrams: [][]byte{
				datagram(destroyEvent(t, 1), noop, newEvent, noTuple, destroyEvent(t, 2)), // 2 errors
				garbled, // event 3, then 1 error
				big,     // larger than a slot: 1 error
				events(t, 4, 1),
			}})
			r := start(t, l)
			waitEvents(t, l, s, 4)
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			wantPorts(t, r.received(), 1, 4)
			st, _ := l.Stats()
			if st.Events != 4 || st.DecodeErrors != 4 {
				t.Errorf("Stats() = %+v, want 4 events and 4 decode errors", st)
			}
		})
	}
}

// TestListenerFallbacks: under MethodAuto a ring the kernel refuses, at
// Listen or at Run, or a multishot receive it cannot do, makes the
// listener receive with recvmmsg and say why; under MethodIOURing each is
// an error; MethodRecvmmsg never tries a ring.
func TestListenerFallbacks(t *testing.T) {
	refused := errors.Join(errRingUnavailable, unix.EPERM)
	tests := []struct {
		name     string
		method   Method
		ringErrs []error
		first    step // the first receive
		// What Listen, then Run, return; the method used; whether a
		// reason is given for it.
		listenErr, runErr error
		want              Method
		why               bool
		rings             int
	}{
		{name: "auto, ring refused at Listen", method: MethodAuto, ringErrs: []error{refused}, want: MethodRecvmmsg, why: true, rings: 1},
		{name: "auto, ring refused at Run", method: MethodAuto, ringErrs: []error{nil, refused}, want: MethodRecvmmsg, why: true, rings: 2},
		{name: "auto, multishot receive refused", method: MethodAuto, first: step{err: unix.EINVAL}, want: MethodRecvmmsg, why: true, rings: 2},
		{name: "auto, multishot receive unsupported", method: MethodAuto, first: step{err: unix.EOPNOTSUPP}, want: MethodRecvmmsg, why: true, rings: 2},
		{name: "auto, ring works", method: "", want: MethodIOURing, rings: 2},
		{name: "io_uring, ring refused at Listen", method: MethodIOURing, ringErrs: []error{refused}, listenErr: errRingUnavailable, rings: 1},
		{name: "io_uring, ring refused at Run", method: MethodIOURing, ringErrs: []error{nil, refused}, runErr: errRingUnavailable, want: MethodIOURing, rings: 2},
		{name: "io_uring, multishot receive refused", method: MethodIOURing, first: step{err: unix.EINVAL}, runErr: errRingUnavailable, want: MethodIOURing, rings: 2},
		{name: "recvmmsg", method: MethodRecvmmsg, want: MethodRecvmmsg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSocket()
			s.ringErrs = tt.ringErrs
			l, err := newListener(ListenConfig{Method: tt.method, Linger: -1}, DefaultBatch, s)
			if tt.listenErr != nil {
				if !errors.Is(err, tt.listenErr) {
					t.Fatalf("newListener: %v, want %v", err, tt.listenErr)
				}
				if _, _, _, closes := s.counts(); closes != 1 {
					t.Errorf("the socket was closed %d times after a failed Listen, want once", closes)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			if tt.first.err != nil {
				s.push(tt.first)
			}
			s.push(step{datagrams: [][]byte{events(t, 1, 3)}})
			r := start(t, l)
			if tt.runErr != nil {
				select {
				case err := <-r.done:
					r.done <- err
					if !errors.Is(err, tt.runErr) {
						t.Fatalf("Run: %v, want %v", err, tt.runErr)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Run did not fail")
				}
			} else {
				waitEvents(t, l, s, 3)
				if err := r.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				wantPorts(t, r.received(), 1, 3)
			}
			got, why := l.Method()
			if got != tt.want || (why != nil) != tt.why {
				t.Errorf("Method() = %s, %v; want %s, a reason %v", got, why, tt.want, tt.why)
			}
			if why != nil && !errors.Is(why, errRingUnavailable) {
				t.Errorf("Method() gives %v as the reason, want errRingUnavailable", why)
			}
			if st, _ := l.Stats(); st.Method != got {
				t.Errorf("Stats().Method = %s, Method() %s", st.Method, got)
			}
			rings, _, open, _ := s.counts()
			if rings != tt.rings || open != 0 {
				t.Errorf("%d rings set up, %d left open; want %d, none open", rings, open, tt.rings)
			}
		})
	}
}

// TestListenerReceiveError: an error other than a timeout, an interrupt or
// an overrun ends Run with it.
func TestListenerReceiveError(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newFakeSocket()
			l := fakeListener(t, ListenConfig{Method: m, Linger: -1}, s)
			s.push(step{err: unix.EINTR}, step{datagrams: [][]byte{events(t, 1, 1)}}, step{err: unix.EPERM})
			r := start(t, l)
			select {
			case err := <-r.done:
				r.done <- err
				if !errors.Is(err, unix.EPERM) {
					t.Fatalf("Run: %v, want EPERM", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not fail")
			}
			wantPorts(t, r.received(), 1, 1)
		})
	}
}

// TestListenerCloseDuringReceive: Close while Run waits for events ends
// Run with errListenerClosed, within one receive timeout; Stats then says
// the listener is closed, and a second Close does nothing.
func TestListenerCloseDuringReceive(t *testing.T) {
	for _, m := range receiveMethods {
		t.Run(string(m), func(t *testing.T) {
			s := newFakeSocket()
			l := fakeListener(t, ListenConfig{Method: m}, s)
			s.push(step{datagrams: [][]byte{events(t, 1, 1)}})
			r := start(t, l)
			waitEvents(t, l, s, 1)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-r.done:
				r.done <- err
				if !errors.Is(err, errListenerClosed) {
					t.Fatalf("Run after Close: %v, want errListenerClosed", err)
				}
			case <-time.After(time.Second):
				t.Fatal("Run still runs 1s after Close")
			}
			if st, err := l.Stats(); !errors.Is(err, errListenerClosed) || st.Events != 1 {
				t.Errorf("Stats() after Close = %+v, %v; want the counters and errListenerClosed", st, err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, _, open, closes := s.counts(); closes != 1 || open != 0 {
				t.Errorf("socket closed %d times, %d rings open; want once, none", closes, open)
			}
			// A Run started after Close returns at once.
			if err := l.Run(context.Background(), func([]Flow) {}); !errors.Is(err, errListenerClosed) {
				t.Errorf("Run after Close: %v, want errListenerClosed", err)
			}
		})
	}
}

// TestNextLinger checks the adapted linger of the io_uring receive: long
// enough for a batch at the rate events came, within its bounds.
func TestNextLinger(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name          string
		base, elapsed time.Duration
		n, batch      int
		want          time.Duration
	}{
		{"dense: a batch came sooner than the base", 2 * ms, 2 * ms, 600, 256, 2 * ms},
		{"a quarter of a batch: four times as long", 2 * ms, 2 * ms, 64, 256, 8 * ms},
		{"sparse: at most five times the base", 2 * ms, 2 * ms, 10, 256, 10 * ms},
		{"no event: the longest", 2 * ms, 10 * ms, 0, 256, 10 * ms},
		{"a full batch", 2 * ms, 5 * ms, 256, 256, 5 * ms},
		{"linger disabled", -1, 2 * ms, 10, 256, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextLinger(tt.base, tt.elapsed, tt.n, tt.batch); got != tt.want {
				t.Errorf("nextLinger(%v, %v, %d, %d) = %v, want %v", tt.base, tt.elapsed, tt.n, tt.batch, got, tt.want)
			}
		})
	}
}
