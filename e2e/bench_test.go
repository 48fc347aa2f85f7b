package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/internal/proc"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
	"github.com/netfilter-exporter/netfilter_exporter/nftables"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// BenchmarkScrapeNfacct measures a whole scrape of the real exporter
// process (kernel dump, snapshot, text exposition, HTTP) with many nfacct
// objects, and reports the process's resident memory after the scrapes.
func BenchmarkScrapeNfacct(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			netnstest.Require(b)
			ns := netnstest.New(b)
			c, err := nfacct.Dial(&nfacct.Config{NetNS: ns.FD()})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for i := 0; i < n; i++ {
				o := nfacct.Object{Name: fmt.Sprintf("ipv4.svc%d", i), Packets: uint64(i), Bytes: uint64(i) * 1500}
				if i%10 == 0 {
					o.Flags, o.Quota = nfacct.FlagQuotaBytes, 1<<30
				}
				if err := c.Create(context.Background(), o); err != nil {
					b.Fatal(err)
				}
			}
			e := startExporter(b, "--netns="+ns.Path())
			b.ResetTimer()
			var size int
			var times []time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				resp, err := http.Get(e.url + "/metrics")
				if err != nil {
					b.Fatal(err)
				}
				nb, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				times = append(times, time.Since(start))
				size = int(nb)
			}
			b.StopTimer()
			// The same dump by the nfacct tool, for the ratio.
			var list []time.Duration
			if _, err := exec.LookPath("nfacct"); err == nil {
				for range 10 {
					start := time.Now()
					if _, err := ns.Try("nfacct", "list"); err != nil {
						b.Fatal(err)
					}
					list = append(list, time.Since(start))
				}
				slices.Sort(list)
				b.ReportMetric(float64(list[len(list)/2].Microseconds())/1000, "nfacct-list-median-ms")
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(size), "body-bytes")
			b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmRSS"), "rss-MB")
			b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmHWM"), "peak-rss-MB")
		})
	}
}

// procStatusMB reads a kB field of /proc/PID/status, in MB.
func procStatusMB(b *testing.B, pid int, field string) float64 {
	mb, err := proc.StatusMB(pid, field)
	if err != nil {
		b.Fatal(err)
	}
	return mb
}

// procCPU returns the processor time, user and system, of process pid: on
// a busy host it moves less than wall time.
func procCPU(b *testing.B, pid int) time.Duration {
	d, err := proc.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// loadNftCounters loads n named counters, one in ten with a quota beside
// it, into table inet bench of ns.
func loadNftCounters(b *testing.B, ns *netnstest.NS, n int) {
	var s strings.Builder
	s.WriteString("table inet bench {\n")
	for i := range n {
		fmt.Fprintf(&s, "\tcounter svc%d { packets %d bytes %d }\n", i, i, i*1500)
		if i%10 == 0 {
			fmt.Fprintf(&s, "\tquota q%d { until 1000 mbytes used %d bytes }\n", i, i)
		}
	}
	s.WriteString("}\n")
	netnstest.NftLoad(b, ns, s.String())
}

// BenchmarkKernelNftablesVsNft reads N named counters (and N/10 quotas)
// with the nftables collector, in process: the kernel dump, the decoding
// and the samples of the tree. In the same loop it times nft's own reading
// of the same table, `nft -j list counters`, started the way a script
// would (ip netns exec), and `ip netns exec NS true` alone, to tell the
// cost of starting a process from nft's own. It reports each as wall ms/op
// and CPU ms/op (the collector's from this process's rusage, nft's from its
// children's), and the ratios of nft's time, less the start, to the
// collector's. CPU time moves less than wall time on a busy machine.
func BenchmarkKernelNftablesVsNft(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("counters=%d", n), func(b *testing.B) {
			netnstest.Require(b, "nft")
			ns := netnstest.New(b)
			loadNftCounters(b, ns, n)
			conn, err := nftables.Dial(&nftables.Config{NetNS: ns.FD()})
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c, err := collector.NewNftables(conn, collector.NftablesConfig{RuleCountersLimit: collector.DefaultRuleCountersLimit})
			if err != nil {
				b.Fatal(err)
			}
			var tb tree.Builder
			// Wall and CPU time of the collector, of nft, of the start.
			var wall, cpu [3]time.Duration
			b.ResetTimer()
			for range b.N {
				t0, c0 := time.Now(), rusage(b, syscall.RUSAGE_SELF)
				tb.Reset()
				if err := c.Update(context.Background(), &tb); err != nil {
					b.Fatal(err)
				}
				t1, c1 := time.Now(), rusage(b, syscall.RUSAGE_SELF)
				k0 := rusage(b, syscall.RUSAGE_CHILDREN)
				out := ns.Run(b, "nft", "-j", "list", "counters")
				t2, k1 := time.Now(), rusage(b, syscall.RUSAGE_CHILDREN)
				ns.Run(b, "true")
				t3, k2 := time.Now(), rusage(b, syscall.RUSAGE_CHILDREN)
				wall[0] += t1.Sub(t0)
				wall[1] += t2.Sub(t1)
				wall[2] += t3.Sub(t2)
				cpu[0] += c1 - c0
				cpu[1] += k1 - k0
				cpu[2] += k2 - k1
				if got := len(tb.Samples()); got != 2*n+4*(n/10)+2 {
					b.Fatalf("the collector made %d samples for %d counters", got, n)
				}
				if strings.Count(out, `{"counter": `) != n {
					b.Fatalf("nft listed %d counters, want %d", strings.Count(out, `{"counter": `), n)
				}
			}
			ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
			b.ReportMetric(ms(wall[0]), "collector-ms/op")
			b.ReportMetric(ms(cpu[0]), "collector-cpu-ms/op")
			b.ReportMetric(ms(wall[1]), "nft-ms/op")
			b.ReportMetric(ms(cpu[1]), "nft-cpu-ms/op")
			b.ReportMetric(ms(wall[2]), "netns-exec-ms/op")
			b.ReportMetric(ms(cpu[2]), "netns-exec-cpu-ms/op")
			b.ReportMetric(float64(wall[1]-wall[2])/float64(wall[0]), "nft/collector")
			b.ReportMetric(float64(cpu[1]-cpu[2])/float64(cpu[0]), "nft/collector-cpu")
		})
	}
}

// rusage returns the user and system CPU time getrusage reports for who.
func rusage(b *testing.B, who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScrapeNftables measures a whole scrape of the real exporter
// process with only the nftables collector on (kernel dump, snapshot, text
// exposition, HTTP) for N named counters and N/10 quotas.
func BenchmarkScrapeNftables(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("counters=%d", n), func(b *testing.B) {
			netnstest.Require(b, "nft")
			ns := netnstest.New(b)
			loadNftCounters(b, ns, n)
			e := startExporter(b, "--netns="+ns.Path(), "--no-collector.nfacct", "--no-collector.conntrack", "--no-collector.conntrack_stats")
			b.ResetTimer()
			var size int
			for range b.N {
				resp, err := http.Get(e.url + "/metrics")
				if err != nil {
					b.Fatal(err)
				}
				nb, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				size = int(nb)
			}
			b.StopTimer()
			b.ReportMetric(float64(size), "body-bytes")
			b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmRSS"), "rss-MB")
		})
	}
}

// BenchmarkScrapeFlows measures whole scrapes of the real exporter process
// holding n conntrack flow series (5n samples: flows, and packets and bytes
// per direction), grouped by family,proto,src,sport,dport: n distinct UDP
// entries are created in a test namespace through ctnetlink and flushed,
// and the exporter sums their DESTROY events. Each scrape asks for gzip, as
// Prometheus does. It reports the median scrape, the compressed body, and
// the exporter's resident memory after the scrapes and at its peak (VmHWM,
// the load included). With graphite=on the exporter also pushes every 5s to
// a listener that counts the points of every push; the scrapes go on once a
// second until three pushes made after they began are complete, and every
// push must hold every point, with none dropped.
func BenchmarkScrapeFlows(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000, 300000} {
		for _, graphiteOn := range []bool{false, true} {
			if graphiteOn && n != 100000 {
				continue
			}
			b.Run(fmt.Sprintf("series=%d/graphite=%v", n, graphiteOn), func(b *testing.B) {
				benchmarkScrapeFlows(b, n, graphiteOn)
			})
		}
	}
}

func benchmarkScrapeFlows(b *testing.B, n int, graphiteOn bool) {
	netnstest.Require(b)
	if restore, err := raiseConntrackMax(n); err != nil {
		b.Fatal(err)
	} else {
		defer restore()
	}
	ns := netnstest.New(b)
	args := []string{"--netns=" + ns.Path(), "--no-collector.nfacct",
		"--conntrack.group-by=family,proto,src,sport,dport", fmt.Sprintf("--conntrack.max-series=%d", n+10)}
	var carbon *pushCounter
	if graphiteOn {
		carbon = newPushCounter(b)
		args = append(args, "--graphite.address="+carbon.ln.Addr().String(), "--graphite.interval=5s")
	}
	e := startExporter(b, args...)
	if err := ctload.Create(ns.FD(), n); err != nil {
		b.Fatal(err)
	}
	if err := ctload.Flush(ns.FD()); err != nil {
		b.Fatal(err)
	}
	series := waitSeries(b, e, n)
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	var times []time.Duration
	var size int
	cpu0 := procCPU(b, e.cmd.Process.Pid)
	start0 := time.Now()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, e.url+"/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		nb, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		times = append(times, time.Since(start))
		size = int(nb)
	}
	b.StopTimer()
	// With the Graphite feed on, the exporter's processor time includes
	// its pushes.
	cpu := procCPU(b, e.cmd.Process.Pid) - cpu0
	if carbon != nil {
		// Scrape once a second until three pushes that began after the
		// scrapes above are complete, so that the peak holds scrapes and
		// pushes together; every push must hold every point.
		checkPushes(b, e, carbon, start0, n)
	}
	// Once more without gzip, for the size of the text.
	resp, err := c.Get(e.url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	text, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(cpu.Seconds()*1000/float64(len(times)), "exporter-cpu-ms/op")
	b.ReportMetric(float64(size), "gzip-bytes")
	b.ReportMetric(float64(text), "text-bytes")
	b.ReportMetric(series, "series")
	b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmRSS"), "rss-MB")
	b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmHWM"), "peak-rss-MB")
	// Where the memory is: the Go heap in use after the scrapes, and the
	// heap size at which the next collection starts.
	heap, _ := scrapeValue(b, e.url, "go_memstats_heap_inuse_bytes")
	nextGC, _ := scrapeValue(b, e.url, "go_memstats_next_gc_bytes")
	b.ReportMetric(heap/1e6, "heap-inuse-MB")
	b.ReportMetric(nextGC/1e6, "next-gc-MB")
}

// checkPushes scrapes e (gzip) once a second until three pushes to carbon
// stamped at or after since are complete, and fails unless every complete
// push holds the same number of points, at least 5n, none malformed, and
// the exporter counted no point dropped. It reports the pushes and their
// points.
func checkPushes(b *testing.B, e *exporter, carbon *pushCounter, since time.Time, n int) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var done []int64
	for {
		done = slices.DeleteFunc(carbon.complete(5*n), func(ts int64) bool { return ts < since.Unix() })
		if len(done) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d complete pushes of %d points in 2 minutes; exporter log:\n%s", len(done), 5*n, e.stderr)
		}
		req, _ := http.NewRequest(http.MethodGet, e.url+"/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(time.Second)
	}
	all := carbon.complete(5 * n)
	carbon.mu.Lock()
	var pushed []int
	for _, ts := range all {
		pushed = append(pushed, carbon.perTime[ts])
	}
	malformed := carbon.malformed
	carbon.mu.Unlock()
	for _, p := range pushed {
		if p != pushed[0] {
			b.Fatalf("pushes hold different numbers of points: %v", pushed)
		}
	}
	dropped, ok := scrapeValue(b, e.url, "netfilter_exporter_graphite_points_dropped_total")
	if !ok || dropped != 0 || malformed != 0 {
		b.Fatalf("points_dropped_total = %v (found %v) and %d malformed lines on a healthy link, want 0; exporter log:\n%s", dropped, ok, malformed, e.stderr)
	}
	b.ReportMetric(float64(len(pushed)), "pushes")
	b.ReportMetric(float64(pushed[0]), "points/push")
}

// waitSeries waits until the exporter holds n flow series, or until their
// number has stopped growing for 2s (events the kernel could not queue are
// lost, and counted), and returns it.
func waitSeries(b *testing.B, e *exporter, n int) float64 {
	deadline := time.Now().Add(3 * time.Minute)
	var last float64
	stable := time.Now()
	for {
		v, _ := scrapeValue(b, e.url, "netfilter_conntrack_series")
		if v >= float64(n) {
			return v
		}
		if v != last {
			last, stable = v, time.Now()
		} else if v > 0 && time.Since(stable) > 2*time.Second {
			lost, _ := scrapeValue(b, e.url, "netfilter_conntrack_events_lost_total")
			b.Logf("%v series of %d (%v events lost)", v, n, lost)
			return v
		}
		if time.Now().After(deadline) {
			b.Fatalf("the exporter holds %v of %d series after 3 minutes", v, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrapeValue returns the value of an unlabelled sample of /metrics, read
// from the text without parsing the rest.
func scrapeValue(b *testing.B, url, name string) (float64, bool) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// raiseConntrackMax makes room for n entries in the conntrack table: the
// limit can only be changed in the initial namespace. It returns a function
// that puts the old values back.
func raiseConntrackMax(n int) (func(), error) {
	files := []string{"/proc/sys/net/netfilter/nf_conntrack_max", "/proc/sys/net/netfilter/nf_conntrack_buckets"}
	var old []string
	for _, f := range files {
		v, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		old = append(old, strings.TrimSpace(string(v)))
	}
	restore := func() {
		for i, f := range files {
			_ = os.WriteFile(f, []byte(old[i]), 0o644)
		}
	}
	want := n + n/4
	for i, f := range files {
		if cur, _ := strconv.Atoi(old[i]); cur >= want {
			continue
		}
		if err := os.WriteFile(f, []byte(strconv.Itoa(want)), 0o644); err != nil {
			restore()
			return nil, fmt.Errorf("raising %s to %d: %w", f, want, err)
		}
	}
	return restore, nil
}

// flowExporter starts the exporter on a fresh namespace holding n flow
// series grouped by family,proto,src,sport,dport, with extra flags.
func flowExporter(b *testing.B, n int, extra ...string) *exporter {
	b.Helper()
	netnstest.Require(b)
	ns := netnstest.New(b)
	args := append([]string{"--netns=" + ns.Path(), "--no-collector.nfacct",
		"--conntrack.group-by=family,proto,src,sport,dport", fmt.Sprintf("--conntrack.max-series=%d", n+10)}, extra...)
	e := startExporter(b, args...)
	if err := ctload.Create(ns.FD(), n); err != nil {
		b.Fatal(err)
	}
	if err := ctload.Flush(ns.FD()); err != nil {
		b.Fatal(err)
	}
	waitSeries(b, e, n)
	return e
}

// stalledClient asks for /metrics uncompressed with a 4 KiB receive
// buffer and never reads.
func stalledClient(b *testing.B, url string) net.Conn {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkStalledClients reproduces the lockout of issue 15: 10,000 flow
// series, 45 clients that ask for /metrics with a 4 KiB receive buffer and
// never read, and beside them 10 normal scrapes (gzip, 10s timeout), one a
// second. It reports how many normal scrapes succeeded, their median, and
// the exporter's peak RSS. Default web flags (40 requests, 10s write
// timeout).
func BenchmarkStalledClients(b *testing.B) {
	e := flowExporter(b, 10000)
	for b.Loop() {
		var conns []net.Conn
		for range 45 {
			conns = append(conns, stalledClient(b, e.url))
		}
		time.Sleep(time.Second)
		ok := 0
		var times []time.Duration
		c := &http.Client{Timeout: 10 * time.Second}
		for range 10 {
			start := time.Now()
			resp, err := c.Get(e.url + "/metrics")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == http.StatusOK {
					ok++
					times = append(times, time.Since(start))
				}
			}
			time.Sleep(time.Second)
		}
		for _, c := range conns {
			c.Close()
		}
		b.ReportMetric(float64(ok), "ok-of-10")
		b.Logf("%d of 10 normal scrapes succeeded beside 45 stalled clients; peak RSS %.1f MB", ok, procStatusMB(b, e.cmd.Process.Pid, "VmHWM"))
		if len(times) > 0 {
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
		}
	}
	b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmHWM"), "peak-rss-MB")
}

// BenchmarkConcurrentScrapes runs rounds of 10 concurrent scrapes (gzip) of
// 4,096 flow series and reports the exporter's peak RSS.
func BenchmarkConcurrentScrapes(b *testing.B) {
	e := flowExporter(b, 4096)
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				resp, err := http.Get(e.url + "/metrics")
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmHWM"), "peak-rss-MB")
}
