package nlconn

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeSocket records what a Conn does with it.
type fakeSocket struct {
	id        int
	mu        sync.Mutex
	deadlines []time.Time
	closes    int
	// failDeadline, when set, is SetDeadline's error.
	failDeadline error
}

func (s *fakeSocket) SetDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failDeadline != nil {
		return s.failDeadline
	}
	s.deadlines = append(s.deadlines, t)
	return nil
}

func (s *fakeSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes++
	return nil
}

// deadline is the socket's current deadline.
func (s *fakeSocket) deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.deadlines) == 0 {
		return time.Time{}
	}
	return s.deadlines[len(s.deadlines)-1]
}

func (s *fakeSocket) closed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closes
}

// dialer hands out fake sockets and counts them; err, when set, fails the
// next dial.
type dialer struct {
	mu      sync.Mutex
	sockets []*fakeSocket
	err     error
}

func (d *dialer) dial() (*fakeSocket, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		err := d.err
		d.err = nil
		return nil, err
	}
	s := &fakeSocket{id: len(d.sockets)}
	d.sockets = append(d.sockets, s)
	return s, nil
}

func (d *dialer) dialled() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sockets)
}

var (
	errTestClosed = errors.New("test client is closed")
	errRequest    = errors.New("request failed")
)

func newTest(t *testing.T, timeout time.Duration) (*Conn[*fakeSocket], *dialer) {
	t.Helper()
	d := &dialer{}
	c, err := New(d.dial, timeout, errTestClosed)
	if err != nil {
		t.Fatal(err)
	}
	return c, d
}

func TestNewDials(t *testing.T) {
	c, d := newTest(t, time.Second)
	if d.dialled() != 1 {
		t.Fatalf("New dialled %d sockets, want 1", d.dialled())
	}
	if err := c.Do(context.Background(), func(s *fakeSocket) error {
		if s != d.sockets[0] {
			t.Error("Do did not pass the socket New dialled")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if d.dialled() != 1 {
		t.Errorf("%d sockets dialled after a clean request, want 1", d.dialled())
	}

	dialErr := errors.New("no socket")
	bad := &dialer{err: dialErr}
	if c, err := New(bad.dial, time.Second, errTestClosed); !errors.Is(err, dialErr) || c != nil {
		t.Errorf("New with a failing dial = %v, %v; want nil, the dial's error", c, err)
	}
}

func TestDoDeadline(t *testing.T) {
	c, d := newTest(t, time.Hour)
	s := d.sockets[0]
	var during time.Time
	start := time.Now()
	c.Do(context.Background(), func(s *fakeSocket) error {
		during = s.deadline()
		return nil
	})
	if during.Before(start.Add(time.Hour)) || during.After(time.Now().Add(time.Hour)) {
		t.Errorf("deadline during the request %v, want an hour from its start %v", during, start)
	}
	if !s.deadline().IsZero() {
		t.Errorf("deadline after the request %v, want none", s.deadline())
	}

	// A context's earlier deadline wins.
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(time.Minute))
	defer cancel()
	c.Do(ctx, func(s *fakeSocket) error {
		during = s.deadline()
		return nil
	})
	if !during.Equal(start.Add(time.Minute)) {
		t.Errorf("deadline during a request with a closer ctx deadline %v, want %v", during, start.Add(time.Minute))
	}
}

func TestDoDropsAfterFailure(t *testing.T) {
	c, d := newTest(t, time.Second)
	if err := c.Do(context.Background(), func(*fakeSocket) error { return errRequest }); err != errRequest {
		t.Fatalf("Do = %v, want fn's error itself", err)
	}
	if d.sockets[0].closed() != 1 {
		t.Fatal("the socket of a failed request was kept")
	}
	if d.dialled() != 1 {
		t.Fatal("a failed request dialled again at once; the next one should")
	}
	var got *fakeSocket
	if err := c.Do(context.Background(), func(s *fakeSocket) error { got = s; return nil }); err != nil {
		t.Fatal(err)
	}
	if d.dialled() != 2 || got != d.sockets[1] {
		t.Errorf("the request after a failure ran on socket %d of %d, want a new one", got.id, d.dialled())
	}
}

func TestDoAnswered(t *testing.T) {
	c, d := newTest(t, time.Second)
	if Answered(nil) != nil {
		t.Error("Answered(nil) is not nil")
	}
	err := c.Do(context.Background(), func(*fakeSocket) error { return Answered(errRequest) })
	if err != errRequest {
		t.Errorf("Do = %#v, want fn's error itself, unmarked", err)
	}
	if d.sockets[0].closed() != 0 || d.dialled() != 1 {
		t.Error("the socket of an answered request was dropped")
	}
}

func TestDoPanic(t *testing.T) {
	c, d := newTest(t, time.Second)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Do swallowed fn's panic")
			}
		}()
		c.Do(context.Background(), func(*fakeSocket) error { panic("decoder bug") })
	}()
	if d.sockets[0].closed() != 1 {
		t.Error("the socket of a request that panicked was kept")
	}
	// The lock was released and the next request redials.
	if err := c.Do(context.Background(), func(*fakeSocket) error { return nil }); err != nil || d.dialled() != 2 {
		t.Errorf("Do after a panic = %v with %d sockets dialled, want nil and 2", err, d.dialled())
	}
}

func TestDoRedialFails(t *testing.T) {
	c, d := newTest(t, time.Second)
	c.Do(context.Background(), func(*fakeSocket) error { return errRequest })
	dialErr := errors.New("no socket now")
	d.err = dialErr
	called := false
	if err := c.Do(context.Background(), func(*fakeSocket) error { called = true; return nil }); !errors.Is(err, dialErr) || called {
		t.Errorf("Do when the redial fails = %v (fn called %v), want the dial's error and no call", err, called)
	}
	if err := c.Do(context.Background(), func(*fakeSocket) error { return nil }); err != nil || d.dialled() != 2 {
		t.Errorf("Do once dialling works again = %v with %d sockets, want nil and 2", err, d.dialled())
	}
}

func TestDoContext(t *testing.T) {
	c, d := newTest(t, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	if err := c.Do(ctx, func(*fakeSocket) error { called = true; return nil }); err != context.Canceled || called {
		t.Errorf("Do with a cancelled ctx = %v (fn called %v), want context.Canceled and no call", err, called)
	}
	if d.sockets[0].closed() != 0 {
		t.Error("a request never sent dropped the socket")
	}

	// Cancelled while fn waits: the deadline is brought forward, and the
	// error names both.
	ctx, cancel = context.WithCancel(context.Background())
	err := c.Do(ctx, func(s *fakeSocket) error {
		cancel()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if d := s.deadline(); d.Before(time.Now()) {
				return errRequest
			}
		}
		return errors.New("the deadline was not brought forward")
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errRequest) {
		t.Errorf("Do cancelled while it waits = %v, want context.Canceled wrapping fn's error", err)
	}
	if d.sockets[0].closed() != 1 {
		t.Error("the socket of a cancelled request was kept")
	}
}

func TestDoDeadlineFails(t *testing.T) {
	c, d := newTest(t, time.Second)
	d.sockets[0].failDeadline = errors.New("bad fd")
	called := false
	if err := c.Do(context.Background(), func(*fakeSocket) error { called = true; return nil }); !errors.Is(err, d.sockets[0].failDeadline) || called {
		t.Errorf("Do when the deadline cannot be set = %v (fn called %v), want its error and no call", err, called)
	}
}

func TestClose(t *testing.T) {
	c, d := newTest(t, time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if n := d.sockets[0].closed(); n != 1 {
		t.Errorf("socket closed %d times, want once", n)
	}
	called := false
	if err := c.Do(context.Background(), func(*fakeSocket) error { called = true; return nil }); err != errTestClosed || called {
		t.Errorf("Do after Close = %v (fn called %v), want the closed error and no call", err, called)
	}
	if d.dialled() != 1 {
		t.Errorf("%d sockets dialled after Close, want none", d.dialled()-1)
	}

	// Close of a Conn whose socket was dropped closes nothing more.
	c, d = newTest(t, time.Second)
	c.Do(context.Background(), func(*fakeSocket) error { return errRequest })
	if err := c.Close(); err != nil || d.sockets[0].closed() != 1 || d.dialled() != 1 {
		t.Errorf("Close after a drop = %v, socket closed %d times, %d dialled; want nil, 1, 1", err, d.sockets[0].closed(), d.dialled())
	}
}

// TestConcurrent runs requests, failing ones among them, and a Close at
// once (go test -race): fn never sees a closed socket, and after Close
// nothing runs.
func TestConcurrent(t *testing.T) {
	c, d := newTest(t, time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	afterClose := false
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				err := c.Do(context.Background(), func(s *fakeSocket) error {
					if s.closed() != 0 {
						t.Error("fn was given a closed socket")
					}
					mu.Lock()
					defer mu.Unlock()
					if afterClose {
						t.Error("fn ran after Close")
					}
					if (g+i)%5 == 0 {
						return errRequest
					}
					return nil
				})
				if err != nil && err != errRequest && err != errTestClosed {
					t.Errorf("Do = %v", err)
				}
			}
		}()
	}
	time.Sleep(time.Millisecond)
	c.Close()
	mu.Lock()
	afterClose = true
	mu.Unlock()
	wg.Wait()
	c.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.sockets {
		if n := s.closed(); n != 1 {
			t.Errorf("socket %d closed %d times, want once", s.id, n)
		}
	}
}
