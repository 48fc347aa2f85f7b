package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/graphite"
	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// pushCounter is a carbon plaintext listener that counts the points it
// reads per timestamp.
type pushCounter struct {
	ln        net.Listener
	mu        sync.Mutex
	perTime   map[int64]int
	malformed int
}

func newPushCounter(b *testing.B) *pushCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &pushCounter{ln: ln, perTime: make(map[int64]int)}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReaderSize(conn, 1<<20)
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					i := bytes.LastIndexByte(line, ' ')
					ts, err := strconv.ParseInt(string(line[i+1:len(line)-1]), 10, 64)
					p.mu.Lock()
					if err != nil || bytes.Count(line, []byte{' '}) != 2 {
						p.malformed++
					} else {
						p.perTime[ts]++
					}
					p.mu.Unlock()
				}
			}()
		}
	}()
	return p
}

// complete returns the timestamps of the pushes that hold at least points
// points and are over: a newer push has begun.
func (p *pushCounter) complete(points int) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var newest int64
	for ts := range p.perTime {
		newest = max(newest, ts)
	}
	var done []int64
	for ts, n := range p.perTime {
		if n >= points && ts < newest {
			done = append(done, ts)
		}
	}
	return done
}

// BenchmarkExporterGraphite100kSeries runs the real exporter with 100,000
// conntrack flow series (500,000 Graphite points per push, flows made with
// ctload and flushed) and the Graphite feed on, pushing every 5 seconds to
// a counting listener on the loopback. Each iteration waits for one more
// complete push. It reports the exporter's peak resident memory with the
// Graphite feed alone, the points of each push (every one must arrive), and
// the points dropped, with the default resend window, a larger one, and
// none. Run it with -benchtime=2x.
func BenchmarkExporterGraphite100kSeries(b *testing.B) {
	for _, window := range []string{graphite.DefaultResendWindowSize, "64MiB", "0"} {
		b.Run("resend-window-size="+window, func(b *testing.B) {
			benchmarkExporterGraphite(b, "--graphite.resend-window-size="+window)
		})
	}
}

func benchmarkExporterGraphite(b *testing.B, args ...string) {
	netnstest.Require(b)
	const series, points = 100_000, 5 * 100_000
	ns := netnstest.New(b)
	carbon := newPushCounter(b)
	e := startExporter(b, append([]string{"--netns=" + ns.Path(), "--no-collector.nfacct", "--no-collector.conntrack_stats",
		"--conntrack.group-by=family,proto,src,sport,dport", "--conntrack.max-series=100010",
		"--graphite.address=" + carbon.ln.Addr().String(), "--graphite.interval=5s"}, args...)...)
	if err := ctload.Create(ns.FD(), series); err != nil {
		b.Fatal(err)
	}
	if err := ctload.Flush(ns.FD()); err != nil {
		b.Fatal(err)
	}
	wait := func(n int) {
		deadline := time.Now().Add(2 * time.Minute)
		for len(carbon.complete(points)) < n {
			if time.Now().After(deadline) {
				carbon.mu.Lock()
				seen := fmt.Sprint(carbon.perTime)
				carbon.mu.Unlock()
				b.Fatalf("fewer than %d complete pushes of %d points after 2 minutes: %s; exporter log:\n%s", n, points, seen, e.stderr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait(1)
	b.ResetTimer()
	for i := range b.N {
		wait(i + 2)
	}
	b.StopTimer()
	peak := procStatusMB(b, e.cmd.Process.Pid, "VmHWM")
	rss := procStatusMB(b, e.cmd.Process.Pid, "VmRSS")

	// Every complete push holds the same points: the series and the
	// exporter's own samples.
	done := carbon.complete(points)
	carbon.mu.Lock()
	var pushed []int
	for _, ts := range done {
		pushed = append(pushed, carbon.perTime[ts])
	}
	carbon.mu.Unlock()
	for _, n := range pushed {
		if n != pushed[0] {
			b.Fatalf("pushes hold different numbers of points: %v", pushed)
		}
	}

	// Read the drop counter last: a scrape of 100,000 series takes memory
	// of its own.
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var dropped float64 = -1
	for _, line := range bytes.Split(body, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("netfilter_exporter_graphite_points_dropped_total ")); ok {
			dropped, _ = strconv.ParseFloat(string(v), 64)
		}
	}
	if dropped != 0 || carbon.malformed != 0 {
		b.Errorf("points_dropped_total = %v and %d malformed lines on a healthy link, want none; exporter log:\n%s", dropped, carbon.malformed, e.stderr)
	}
	b.ReportMetric(peak, "peak-rss-MB")
	b.ReportMetric(rss, "rss-MB")
	b.ReportMetric(float64(pushed[0]), "points/push")
	b.ReportMetric(float64(len(pushed)), "pushes")
}
