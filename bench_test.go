package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
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
			for i := 0; i < b.N; i++ {
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
			b.ReportMetric(procStatusMB(b, e.cmd.Process.Pid, "VmHWM"), "peak-rss-MB")
		})
	}
}

// procStatusMB reads a kB field of /proc/PID/status, in MB.
func procStatusMB(b *testing.B, pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
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
