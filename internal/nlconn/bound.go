package nlconn

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// past is a deadline in the past, set to cut pending I/O short.
var past = time.Unix(1, 0)

// deadliner is the part of a socket bound needs.
type deadliner interface {
	SetDeadline(time.Time) error
}

// bound sets a deadline on conn of now+timeout or ctx's deadline, whichever
// is earlier, and cuts the pending I/O short if ctx is cancelled. The
// returned function must be called once the I/O is done.
func bound(ctx context.Context, conn deadliner, timeout time.Duration) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("setting netlink deadline: %w", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	if ctx.Done() != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				_ = conn.SetDeadline(past)
			case <-done:
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
		_ = conn.SetDeadline(time.Time{})
	}, nil
}
