package nlconn

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Socket is what a Conn keeps: *netlink.Conn is one.
type Socket interface {
	SetDeadline(time.Time) error
	Close() error
}

// Conn keeps one Socket of a kernel client. It is safe for concurrent use;
// requests are serialised.
type Conn[S Socket] struct {
	mu      sync.Mutex
	dial    func() (S, error)
	timeout time.Duration
	// errClosed is what requests return after Close; shut tells
	// whether Close was called.
	errClosed error
	shut      bool
	// s is valid when open. It is dropped after a request failed: its
	// answer, or the rest of it, may still arrive (a deadline that passed
	// while the kernel was busy) and would be read as the answer to the
	// next request, which netlink refuses as a mismatched sequence,
	// request after request. The next request dials a fresh socket.
	s    S
	open bool
}

// New returns a Conn whose sockets dial opens, with its first socket
// already open: an error of dial is New's. Each request is bounded by
// timeout; after Close, requests fail with closed.
func New[S Socket](dial func() (S, error), timeout time.Duration, closed error) (*Conn[S], error) {
	c := &Conn[S]{dial: dial, timeout: timeout, errClosed: closed}
	if err := c.redial(); err != nil {
		return nil, err
	}
	return c, nil
}

// redial opens a socket if none is open. c.mu is held or c is not shared
// yet.
func (c *Conn[S]) redial() error {
	if c.open {
		return nil
	}
	s, err := c.dial()
	if err != nil {
		return err
	}
	c.s, c.open = s, true
	return nil
}

// drop closes the socket; the next request dials a new one. c.mu is held.
func (c *Conn[S]) drop() error {
	if !c.open {
		return nil
	}
	var zero S
	err := c.s.Close()
	c.s, c.open = zero, false
	return err
}

// Do runs one request: fn with the socket, dialled first if the last one
// was dropped, under a deadline of the Conn's timeout or ctx's deadline,
// whichever is earlier, that ctx's cancellation brings forward. When fn
// fails, or panics, the socket is dropped, unless fn's error is Answered;
// an error while ctx is done is wrapped in ctx's. After Close, Do fails
// with the Conn's closed error without calling fn.
func (c *Conn[S]) Do(ctx context.Context, fn func(S) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut {
		return c.errClosed
	}
	if err := c.redial(); err != nil {
		return err
	}
	stop, err := bound(ctx, c.s, c.timeout)
	if err != nil {
		return err
	}
	finished := false
	defer func() {
		if !finished {
			// fn panicked: whatever it left on the socket goes with it.
			stop()
			c.drop()
		}
	}()
	err = fn(c.s)
	finished = true
	stop()
	if a, ok := err.(answered); ok {
		err = a.err
	} else if err != nil {
		c.drop()
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// Close closes the socket, if one is open, and makes every later request
// fail. It may be called more than once, and while a request runs (it then
// waits for it).
func (c *Conn[S]) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shut = true
	return c.drop()
}

// answered is an error that ended a whole answer; see Answered.
type answered struct{ err error }

func (a answered) Error() string { return a.err.Error() }
func (a answered) Unwrap() error { return a.err }

// Answered marks err, returned by the function given to Do, as the
// kernel's whole answer to the request (an error message, or a decoding
// error found once the answer ended): the socket is still in step with the
// kernel, and Do keeps it and returns err itself. Answered(nil) is nil.
func Answered(err error) error {
	if err == nil {
		return nil
	}
	return answered{err}
}
