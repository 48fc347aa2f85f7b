package task

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// logs is a slog.Handler that keeps the records' messages and attributes.
type logs struct {
	mu      sync.Mutex
	records []map[string]any
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, m)
	return nil
}

func (l *logs) get() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.records...)
}

func newLogger() (*slog.Logger, *logs) {
	l := &logs{}
	return slog.New(l), l
}

// TestGroupStop: Stop cancels every Func's context and returns once all
// have returned; an error a Func returns before Stop is logged with its
// name, one returned because of Stop is not.
func TestGroupStop(t *testing.T) {
	logger, logs := newLogger()
	g := NewGroup(context.Background(), logger)
	failed := make(chan struct{})
	g.Go("failing", func(ctx context.Context) error {
		defer close(failed)
		return errors.New("broken")
	})
	var returned atomic.Int32
	for range 3 {
		g.Go("waiting", func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // Stop must wait for this
			returned.Add(1)
			return ctx.Err() // after Stop: not logged
		})
	}
	<-failed
	if g.Context().Err() != nil {
		t.Fatal("a failing Func cancelled the Group")
	}
	g.Stop()
	if n := returned.Load(); n != 3 {
		t.Fatalf("Stop returned with %d of 3 Funcs returned", n)
	}
	if g.Context().Err() == nil {
		t.Error("Context() is not done after Stop")
	}
	g.Stop() // a second Stop is harmless
	recs := logs.get()
	if len(recs) != 1 || recs[0]["task"] != "failing" || recs[0]["err"].(error).Error() != "broken" {
		t.Errorf("logged %v, want one error of task failing", recs)
	}
}

// TestGroupParent: the Funcs stop when the parent context is done.
func TestGroupParent(t *testing.T) {
	logger, _ := newLogger()
	parent, cancel := context.WithCancel(context.Background())
	g := NewGroup(parent, logger)
	done := make(chan struct{})
	g.Go("waiting", func(ctx context.Context) error {
		<-ctx.Done()
		close(done)
		return nil
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the Func did not see its parent's end")
	}
	g.Stop()
}

// TestRetry: a failing Func runs again after a wait that doubles from
// Backoff.Min up to Backoff.Max; each failure is logged with the wait; a
// nil return before the context is done counts as a failure.
func TestRetry(t *testing.T) {
	logger, logs := newLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	b := Backoff{Min: time.Millisecond, Max: 32 * time.Millisecond}
	f := Retry("flaky", func(ctx context.Context) error {
		switch n := runs.Add(1); {
		case n == 3:
			return nil
		case n == 7:
			cancel()
			return errors.New("cancelled meanwhile")
		}
		return errors.New("broken")
	}, b, logger)
	if err := f(ctx); err != nil {
		t.Fatalf("Retry's Func returned %v after its context ended, want nil", err)
	}
	if n := runs.Load(); n != 7 {
		t.Fatalf("%d runs, want 7", n)
	}
	recs := logs.get()
	want := []time.Duration{1, 2, 4, 8, 16, 32}
	if len(recs) != len(want) {
		t.Fatalf("%d failures logged, want %d (none after the context ended): %v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		if r["msg"] != "flaky failed; retrying" || r["retry_in"] != want[i]*time.Millisecond {
			t.Errorf("failure %d logged %v, want retry_in %v", i, r, want[i]*time.Millisecond)
		}
	}
	if err, _ := recs[2]["err"].(error); !errors.Is(err, errStopped) {
		t.Errorf("a nil return before the end was logged as %v, want errStopped", recs[2]["err"])
	}
}

// TestRetryResets: a run that lasts longer than Backoff.Max resets the
// wait to Backoff.Min.
func TestRetryResets(t *testing.T) {
	logger, logs := newLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	b := Backoff{Min: time.Millisecond, Max: 100 * time.Millisecond}
	f := Retry("flaky", func(ctx context.Context) error {
		switch runs.Add(1) {
		case 3:
			time.Sleep(b.Max + 50*time.Millisecond)
		case 5:
			cancel()
			return nil
		}
		return errors.New("broken")
	}, b, logger)
	if err := f(ctx); err != nil {
		t.Fatal(err)
	}
	var got []time.Duration
	for _, r := range logs.get() {
		got = append(got, r["retry_in"].(time.Duration))
	}
	want := []time.Duration{1, 2, 1, 2}
	if len(got) != len(want) {
		t.Fatalf("waits %v, want %v ms", got, want)
	}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", got, want)
		}
	}
}

// TestRetryStopsWhileWaiting: the end of the context ends the wait between
// two runs at once.
func TestRetryStopsWhileWaiting(t *testing.T) {
	logger, _ := newLogger()
	ctx, cancel := context.WithCancel(context.Background())
	var runs atomic.Int32
	f := Retry("slow", func(context.Context) error {
		runs.Add(1)
		return errors.New("broken")
	}, Backoff{Min: time.Hour, Max: time.Hour}, logger)
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Retry waited out its backoff after its context ended")
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
}

func TestSleep(t *testing.T) {
	start := time.Now()
	if !Sleep(context.Background(), 20*time.Millisecond) {
		t.Error("Sleep reported a live context done")
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("Sleep(20ms) returned after %v", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep reported a cancelled context alive")
	}
}
