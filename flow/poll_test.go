package flow

import (
	"context"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// burstListener is a listener whose event count grows at a million a
// second until until, then stays.
type burstListener struct {
	FakeListener
	start, until time.Time
}

// Stats returns the events delivered so far.
func (b *burstListener) Stats() (ctnl.ListenerStats, error) {
	now := time.Now()
	if now.After(b.until) {
		now = b.until
	}
	return ctnl.ListenerStats{Events: uint64(max(now.Sub(b.start), 0).Microseconds())}, nil
}

func TestPollerYieldsToBursts(t *testing.T) {
	tests := []struct {
		name  string
		burst time.Duration // how long events keep coming from now
		limit time.Duration
		// The dump may start no sooner than after wantMin; yields tells
		// whether it must have waited.
		wantMin time.Duration
		yields  bool
	}{
		{name: "quiet", burst: 0, limit: 10 * time.Second, wantMin: 0, yields: false},
		{name: "burst that ends", burst: 400 * time.Millisecond, limit: 10 * time.Second, wantMin: 400 * time.Millisecond, yields: true},
		{name: "burst longer than the limit", burst: time.Hour, limit: time.Second, wantMin: time.Second, yields: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			l := &burstListener{start: now.Add(-time.Second), until: now.Add(tt.burst)}
			p := &poller{l: l}
			start := time.Now()
			if !p.yield(context.Background(), tt.limit) {
				t.Fatal("yield reported the context done")
			}
			took := time.Since(start)
			if took < tt.wantMin {
				t.Errorf("the dump could start after %v, want no sooner than %v", took, tt.wantMin)
			}
			if took > tt.limit+time.Second {
				t.Errorf("the dump waited %v, more than its limit %v", took, tt.limit)
			}
			if got := p.stats().Yields > 0; got != tt.yields {
				t.Errorf("yielded %d times, want some: %v", p.stats().Yields, tt.yields)
			}
		})
	}

	t.Run("context done", func(t *testing.T) {
		now := time.Now()
		p := &poller{l: &burstListener{start: now, until: now.Add(time.Hour)}}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if p.yield(ctx, time.Hour) {
			t.Error("yield ran on after its context was done")
		}
	})
}
