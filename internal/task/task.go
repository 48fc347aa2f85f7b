package task

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Func is one piece of background work. It returns nil once ctx is done, or
// an error if it cannot go on.
type Func func(ctx context.Context) error

// Group runs Funcs until it is stopped. The zero Group is not usable; make
// one with NewGroup.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	logger *slog.Logger
	wg     sync.WaitGroup
}

// NewGroup returns a Group whose Funcs run until parent is done or Stop is
// called.
func NewGroup(parent context.Context, logger *slog.Logger) *Group {
	ctx, cancel := context.WithCancel(parent)
	return &Group{ctx: ctx, cancel: cancel, logger: logger}
}

// Go runs f in its own goroutine. An error it returns before the Group is
// stopped is logged with name.
func (g *Group) Go(name string, f Func) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(g.ctx); err != nil && g.ctx.Err() == nil {
			g.logger.Error("background task stopped", "task", name, "err", err)
		}
	}()
}

// Context returns the context the Group's Funcs run with.
func (g *Group) Context() context.Context {
	return g.ctx
}

// Stop cancels every Func and waits until all have returned.
func (g *Group) Stop() {
	g.cancel()
	g.wg.Wait()
}

// Backoff bounds the wait between two runs of a Func that failed: it
// doubles from Min after each failure up to Max, and starts again from Min
// after a run that lasted longer than Max.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff waits 1s after a failure, then 2s, 4s... up to 30s.
var DefaultBackoff = Backoff{Min: time.Second, Max: 30 * time.Second}

// Retry returns a Func that runs f again and again until ctx is done,
// waiting after each failure as b says. Each failure is logged with name;
// a run that lasts longer than b.Max resets the wait.
func Retry(name string, f Func, b Backoff, logger *slog.Logger) Func {
	return func(ctx context.Context) error {
		wait := b.Min
		for {
			start := time.Now()
			err := f(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errStopped
			}
			if time.Since(start) > b.Max {
				wait = b.Min
			}
			logger.Error(name+" failed; retrying", "err", err, "retry_in", wait)
			if !Sleep(ctx, wait) {
				return nil
			}
			wait = min(2*wait, b.Max)
		}
	}
}

// errStopped is what Retry logs for a Func that returned nil before its
// context was done.
var errStopped = errors.New("stopped without an error")

// Sleep waits for d or until ctx is done, and reports whether ctx is still
// alive.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
