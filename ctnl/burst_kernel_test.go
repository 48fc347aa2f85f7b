package ctnl_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// methods are the receive methods every kernel test runs with.
var methods = []ctnl.Method{ctnl.MethodIOURing, ctnl.MethodRecvmmsg}

// queuedBurst listens in a fresh namespace with cfg, then creates n flows
// and flushes them before receiving starts, so that the whole burst waits
// in the socket (or overflows it). It returns the listener and the
// namespace handle; the caller runs the listener.
func queuedBurst(tb testing.TB, cfg ctnl.ListenConfig, n int) *ctnl.Listener {
	tb.Helper()
	ns := netnstest.New(tb)
	h, err := netns.Open(ns.Path())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	cfg.NetNS = h.FD()
	l, err := ctnl.Listen(&cfg)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
		netnstest.Unavailable(tb, "%s unavailable here: %v", cfg.Method, err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	if err := ctload.Create(ns.FD(), n); err != nil {
		tb.Fatal(err)
	}
	if err := ctload.Flush(ns.FD()); err != nil {
		tb.Fatal(err)
	}
	return l
}

// drain runs l until it has accounted for n events, received or dropped
// by the kernel, and returns how many it received.
func drain(tb testing.TB, l *ctnl.Listener, n int) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got atomic.Uint64
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(fs []ctnl.Flow) {
			got.Add(uint64(len(fs)))
		})
	}()
	for ctx.Err() == nil {
		st, err := l.Stats()
		if err != nil {
			tb.Fatal(err)
		}
		if got.Load()+st.Drops >= uint64(n) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		tb.Fatalf("Run: %v", err)
	}
	return got.Load()
}

// TestKernelQueuedBurst receives a burst 20 times larger than the io_uring
// ring's buffers, all queued before receiving starts: every event must
// arrive, and running out of buffers must not be taken for an overrun.
func TestKernelQueuedBurst(t *testing.T) {
	netnstest.Require(t)
	const n = 20000
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			l := queuedBurst(t, ctnl.ListenConfig{Method: m, ReadBuffer: 64 << 20}, n)
			if got, _ := l.Method(); got != m {
				t.Fatalf("Method() = %s, want %s", got, m)
			}
			if got := drain(t, l, n); got != n {
				t.Errorf("received %d of %d events", got, n)
			}
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Events != n || st.Drops != 0 || st.Overruns != 0 || st.DecodeErrors != 0 {
				t.Errorf("stats %+v, want %d events and no drops, overruns or decode errors", st, n)
			}
		})
	}
}

// TestKernelOverrunENOBUFS overruns a small buffer with the kernel's
// default overrun reporting (ENOBUFS, no NETLINK_NO_ENOBUFS): the listener
// must count the overrun, go on receiving, and every event must be either
// received or in the kernel's drop count.
func TestKernelOverrunENOBUFS(t *testing.T) {
	netnstest.Require(t)
	const n = 20000
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			l := queuedBurst(t, ctnl.ListenConfig{Method: m, ReadBuffer: 64 << 10, MaxReadBuffer: 64 << 10}, n)
			got := drain(t, l, n)
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Drops == 0 || st.Overruns == 0 {
				t.Fatalf("stats %+v: a 64 KiB buffer did not overrun; the test proves nothing", st)
			}
			if got+st.Drops != n {
				t.Errorf("received %d + dropped %d = %d, want %d", got, st.Drops, got+st.Drops, n)
			}
			if st.Events != got || st.Lost != st.Drops {
				t.Errorf("stats %+v, want %d events and lost = drops", st, got)
			}
		})
	}
}

// BenchmarkKernelDrain measures how fast a listener drains a burst of
// 200,000 DESTROY events already queued in its socket: wall and CPU time
// (user+system of the whole process) per event.
func BenchmarkKernelDrain(b *testing.B) {
	netnstest.Require(b)
	const n = 200000
	for _, m := range methods {
		b.Run(string(m), func(b *testing.B) {
			var wall, cpu time.Duration
			for range b.N {
				b.StopTimer()
				l := queuedBurst(b, ctnl.ListenConfig{Method: m, ReadBuffer: 1 << 30}, n)
				cpu0 := cpuTime(b)
				t0 := time.Now()
				b.StartTimer()
				if got := drain(b, l, n); got != n {
					b.Fatalf("received %d of %d events", got, n)
				}
				b.StopTimer()
				wall += time.Since(t0)
				cpu += cpuTime(b) - cpu0
				l.Close()
			}
			b.ReportMetric(float64(wall.Nanoseconds())/float64(b.N*n), "ns/event")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/event")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
