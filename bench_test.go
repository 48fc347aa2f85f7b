package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
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
