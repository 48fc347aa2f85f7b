package graphite

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rssMB returns the resident memory of this process, in MB.
func rssMB(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// cpuTime returns the CPU time this process has used, user and system. On a
// shared machine it moves less than the wall time b reports.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
}

// heapMB returns the bytes of live Go heap objects after a collection, in MB.
func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// drain takes every queued line and acknowledges it, without keeping it.
func drain(q *queue) {
	n := 0
	for d := q.take(); d != nil; d = q.take() {
		n += len(d)
	}
	q.ack(n, time.Now())
}

// BenchmarkFormat100kSeries formats one snapshot of 100,000 conntrack series
// (500,000 points) into the chunks of a batch, and frees them.
func BenchmarkFormat100kSeries(b *testing.B) {
	src := newFlowSource(100_000)
	for _, mode := range []Mode{Cumulative, Delta} {
		b.Run(mode.String(), func(b *testing.B) {
			f := newFormatter("netfilter", mode)
			q := newQueue(0, 1<<30, 0, 0)
			defer q.release()
			var lines, size int
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				batch := q.newBatch()
				f.format(src.Snapshot(context.Background()), batch)
				lines, size = batch.lines, batch.bytes
				batch.push()
				drain(q) // frees the chunks, as carbon taking them does

			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(lines), "points/op")
			b.ReportMetric(float64(size)/float64(lines), "bytes/point")
		})
	}
}

// BenchmarkSend100kSeries formats a snapshot of 100,000 conntrack series,
// queues it, writes it to a real TCP listener on the loopback that reads
// and counts every line, and waits until its kernel has acknowledged every
// byte: one push of 500,000 points, end to end.
func BenchmarkSend100kSeries(b *testing.B) {
	carbon := startCountingCarbon(b)
	src := newFlowSource(100_000)
	windowBytes, _ := ParseWindowSize(DefaultResendWindowSize)
	w, err := New(Config{
		Address: carbon.ln.Addr().String(), Prefix: "netfilter", Interval: time.Hour, Timeout: time.Minute,
		BacklogBytes: 256 << 20, ResendWindow: DefaultResendWindow, ResendWindowBytes: windowBytes,
	}, src, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	draining := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); w.send(ctx, draining) }()
	defer func() { close(draining); <-done; cancel(); w.closeConn(); w.q.release() }()
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		w.queue(src.Snapshot(context.Background()), false)
		for !w.q.empty() {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu)
	st := w.Stats()
	if st.Dropped != 0 || st.Sent%500_000 != 0 {
		b.Fatalf("stats = %+v: points dropped or missing", st)
	}
	b.ReportMetric(500_000, "points/op")
}

// BenchmarkQueueMemory measures the memory the backlog and the resend
// window take for 100,000 conntrack series: the resident memory and Go heap
// added by one snapshot of 500,000 points waiting in the backlog, and by the
// resend window once snapshots were acknowledged, with its default limits,
// and the CPU time of acknowledging (and so compressing) one snapshot.
func BenchmarkQueueMemory(b *testing.B) {
	for _, snapshots := range []int{1, 5, 10} {
		b.Run(fmt.Sprintf("window-snapshots=%d", snapshots), func(b *testing.B) {
			src := newFlowSource(100_000)
			windowBytes, _ := ParseWindowSize(DefaultResendWindowSize)
			var backlogRSS, backlogHeap, windowRSS, windowHeap, snapMB, ackCPU float64
			var st queueStats
			for b.Loop() {
				f := newFormatter("netfilter", Cumulative)
				q := newQueue(0, 256<<20, windowBytes, time.Hour)
				debug.FreeOSMemory()
				rss0, heap0 := rssMB(b), heapMB()
				batch := q.newBatch()
				f.format(src.Snapshot(context.Background()), batch)
				snapMB = float64(batch.bytes) / (1 << 20)
				batch.push()
				debug.FreeOSMemory()
				backlogRSS, backlogHeap = rssMB(b)-rss0, heapMB()-heap0
				cpu := cpuTime()
				drain(q)
				ackCPU = float64(cpuTime()-cpu) / 1e6
				for range snapshots - 1 {
					batch := q.newBatch()
					f.format(src.Snapshot(context.Background()), batch)
					batch.push()
					drain(q)
				}
				debug.FreeOSMemory()
				windowRSS, windowHeap = rssMB(b)-rss0, heapMB()-heap0
				if st = q.stats(); st.windowBytes > windowBytes || st.backlogLines != 0 {
					b.Fatalf("stats = %+v", st)
				}
				q.release()
			}
			b.ReportMetric(snapMB, "snapshot-MiB")
			b.ReportMetric(backlogRSS, "backlog-rss-MB")
			b.ReportMetric(backlogHeap, "backlog-heap-MB")
			b.ReportMetric(float64(st.windowLines), "window-points")
			b.ReportMetric(float64(st.windowBytes)/(1<<20), "window-MiB")
			b.ReportMetric(windowRSS, "window-rss-MB")
			b.ReportMetric(windowHeap, "window-heap-MB")
			b.ReportMetric(ackCPU, "ack-cpu-ms")
		})
	}
}
