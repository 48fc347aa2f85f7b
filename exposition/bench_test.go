package exposition

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// benchListener delivers one batch of DESTROY events, then waits.
type benchListener struct {
	flows []ctnl.Flow
	done  chan struct{}
}

func (l *benchListener) Run(ctx context.Context, fn func([]ctnl.Flow)) error {
	fn(l.flows)
	close(l.done)
	<-ctx.Done()
	return nil
}

func (l *benchListener) Stats() (ctnl.ListenerStats, error) { return ctnl.ListenerStats{}, nil }
func (l *benchListener) Drained() time.Time                 { return time.Now() }

// SetFilter accepts any filter: the fake has no kernel to run it.
func (l *benchListener) SetFilter(*ctnl.EventFilter) error { return nil }

// flowSource returns the conntrack collector, behind a collector Set,
// holding n flow series grouped by family,proto,src,sport,dport, with live
// accounting on as the exporter runs by default: 6 samples per series.
func flowSource(tb testing.TB, n int) *collector.Set {
	keys, err := flow.ParseGroupBy("family,proto,src,sport,dport")
	if err != nil {
		tb.Fatal(err)
	}
	p, err := flow.New(flow.Config{GroupBy: keys, MaxSeries: n + 10, Live: true})
	if err != nil {
		tb.Fatal(err)
	}
	l := &benchListener{flows: make([]ctnl.Flow, n), done: make(chan struct{})}
	for i := range l.flows {
		f := &l.flows[i]
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		dst := netip.AddrFrom4([4]byte{198, 51, 100, 1})
		// Distinct kernel ids, as the kernel gives them: live accounting
		// follows flows by id.
		f.Family, f.ID = 4, uint32(i+1)
		f.Orig = ctnl.Tuple{Src: src, Dst: dst, Proto: 6, SPort: uint16(32768 + i%28000), DPort: 443}
		f.Reply = ctnl.Tuple{Src: dst, Dst: src, Proto: 6, SPort: 443, DPort: uint16(32768 + i%28000)}
		f.OrigPackets, f.OrigBytes, f.ReplyPackets, f.ReplyBytes = 10, 1500+uint64(i), 20, 3_000_000+uint64(i)
	}
	if err := p.Open(0, func() (flow.Conns, error) { return flow.Conns{Listener: l}, nil }); err != nil {
		tb.Fatal(err)
	}
	c := collector.NewConntrack(p)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go func() { _ = p.Run(ctx) }()
	<-l.done
	return collector.NewSet(map[string]collector.Collector{"conntrack": c}, time.Minute, slog.New(slog.DiscardHandler))
}

func flowSnapshot(tb testing.TB, src Source) *tree.Snapshot {
	return src.Snapshot(context.Background())
}

func BenchmarkPieces(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		agg := flowSource(b, n)
		b.Run(fmt.Sprintf("update/series=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				flowSnapshot(b, agg)
			}
		})
		snap := flowSnapshot(b, agg)
		b.Run(fmt.Sprintf("render/series=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var size int64
			for b.Loop() {
				cw := &countWriter{}
				if _, err := render(cw, Text, nil, snap); err != nil {
					b.Fatal(err)
				}
				size = cw.n
			}
			b.ReportMetric(float64(size), "bytes")
		})
		b.Run(fmt.Sprintf("render+stdgzip1/series=%d", n), func(b *testing.B) {
			for b.Loop() {
				cw := &countWriter{}
				zw, _ := gzip.NewWriterLevel(cw, gzip.BestSpeed)
				if _, err := render(zw, Text, nil, snap); err != nil {
					b.Fatal(err)
				}
				zw.Close()
				b.ReportMetric(float64(cw.n), "gz-bytes")
			}
		})
		b.Run(fmt.Sprintf("render+kgzip1/series=%d", n), func(b *testing.B) {
			for b.Loop() {
				cw := &countWriter{}
				zw, _ := kgzip.NewWriterLevel(cw, kgzip.BestSpeed)
				if _, err := render(zw, Text, nil, snap); err != nil {
					b.Fatal(err)
				}
				zw.Close()
				b.ReportMetric(float64(cw.n), "gz-bytes")
			}
		})
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// sharedSeries is a model of a collector that keeps, for the life of each
// flow series, its label values (tree.Labels, rendered once) and the head
// of its Graphite path, and reads it into the tree with AddShared: nothing
// allocated per sample and per snapshot but the samples themselves.
type sharedSeries struct {
	keys, orig, reply *tree.Labels
	head              []string
	flows, op, ob     float64
	rp, rb            float64
}

type sharedSource struct {
	series                   []sharedSeries
	flowsD                   *tree.Desc
	origPackets, origBytes   *tree.Desc
	replyPackets, replyBytes *tree.Desc
}

func newSharedSource(n int) *sharedSource {
	keys := []string{"family", "proto", "src", "sport", "dport"}
	dir := append([]string{"direction"}, keys...)
	packets := tree.NewDesc("netfilter_conntrack_flow_packets_total", "Packets.", tree.Counter, dir...)
	bytes := tree.NewDesc("netfilter_conntrack_flow_bytes_total", "Bytes.", tree.Counter, dir...)
	s := &sharedSource{
		flowsD:      tree.NewDesc("netfilter_conntrack_flows_total", "Flows.", tree.Counter, keys...).WithLeaf("flows"),
		origPackets: packets.WithLeaf("orig", "pkts"), origBytes: bytes.WithLeaf("orig", "bytes"),
		replyPackets: packets.WithLeaf("reply", "pkts"), replyBytes: bytes.WithLeaf("reply", "bytes"),
	}
	for i := range n {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		v := []string{"ipv4", "tcp", src, fmt.Sprint(32768 + i%28000), "443"}
		s.series = append(s.series, sharedSeries{
			keys:  tree.NewLabels(v...),
			orig:  tree.NewLabels(append([]string{"orig"}, v...)...),
			reply: tree.NewLabels(append([]string{"reply"}, v...)...),
			head:  append([]string{"conntrack"}, v...),
			flows: 1, op: 10, ob: 1500 + float64(i), rp: 20, rb: 3e6 + float64(i),
		})
	}
	return s
}

func (s *sharedSource) Snapshot(context.Context) *tree.Snapshot {
	var b tree.Builder
	b.Grow(5 * len(s.series))
	for i := range s.series {
		e := &s.series[i]
		b.AddShared(s.flowsD, e.flows, e.head, e.keys)
		b.AddShared(s.origPackets, e.op, e.head, e.orig)
		b.AddShared(s.origBytes, e.ob, e.head, e.orig)
		b.AddShared(s.replyPackets, e.rp, e.head, e.reply)
		b.AddShared(s.replyBytes, e.rb, e.head, e.reply)
	}
	// As a Set takes the samples of a grown Builder: as they are.
	snap := &tree.Snapshot{}
	snap.Append(&b)
	return snap
}

// BenchmarkScrape measures whole scrapes through the Handler over loopback
// HTTP with gzip, of n flow series: from the conntrack collector and its
// aggregator (6 samples per series), and from a model collector that keeps
// each series' labels and path head (tree.Labels, AddShared; 5 samples per
// series). The peak RSS is the process's over the sub-benchmark, the
// source's own memory included: it is reset before each.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000, 300000} {
		sources := []struct {
			name string
			src  func(b *testing.B) Source
		}{
			{"aggregator", func(b *testing.B) Source { return flowSource(b, n) }},
			{"shared", func(*testing.B) Source { return newSharedSource(n) }},
		}
		for _, sc := range sources {
			b.Run(fmt.Sprintf("%s/series=%d", sc.name, n), func(b *testing.B) {
				resetPeakRSS(b)
				h := NewHandler(sc.src(b), HandlerOpts{})
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				srv := &http.Server{Handler: h}
				go srv.Serve(l)
				defer srv.Close()
				c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
				url := "http://" + l.Addr().String() + "/metrics"
				var times []time.Duration
				b.ReportAllocs()
				cpu0 := processCPU(b)
				for b.Loop() {
					start := time.Now()
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					req.Header.Set("Accept-Encoding", "gzip")
					resp, err := c.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					times = append(times, time.Since(start))
				}
				cpu := processCPU(b) - cpu0
				slices.Sort(times)
				b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
				b.ReportMetric(cpu.Seconds()*1000/float64(len(times)), "cpu-ms/op")
				b.ReportMetric(peakRSSMB(b), "process-peak-rss-MB")
			})
		}
	}
}

// processCPU returns the processor time of the process, user and system:
// unlike wall time, it does not count the time other processes of a busy
// host take.
func processCPU(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS returns the memory of earlier sub-benchmarks to the system
// and resets the process's peak resident set (VmHWM) to its current RSS.
func resetPeakRSS(b *testing.B) {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS: %v", err)
	}
}

// peakRSSMB returns the test process's peak resident set (VmHWM), in MB.
func peakRSSMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkRender measures rendering alone (text format, no gzip) of 100,000
// flow series, with label values per sample and with shared Labels whose
// text is cached.
func BenchmarkRender(b *testing.B) {
	const n = 100000
	for _, sc := range []struct {
		name string
		src  Source
	}{{"values", flowSource(b, n)}, {"shared", newSharedSource(n)}} {
		snap := sc.src.Snapshot(context.Background())
		b.Run(sc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := render(io.Discard, Text, nil, snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
