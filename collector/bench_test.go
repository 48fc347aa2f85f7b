package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
)

// BenchmarkNfacctGather measures a snapshot of many objects and its
// rendering in the text format, without the kernel: the exporter's own share
// of a scrape. (It renders and parses the text back, as tests compare it.)
func BenchmarkNfacctGather(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			objs := make([]nfacct.Object, n)
			for i := range objs {
				objs[i] = nfacct.Object{Name: fmt.Sprintf("ipv4.svc%d", i), Packets: uint64(i), Bytes: uint64(i) * 1500, Use: 1}
			}
			c, err := NewNfacct(fakeLister{objs: objs}, NfacctConfig{})
			if err != nil {
				b.Fatal(err)
			}
			g := exposition.NewGatherer(NewSet(map[string]Collector{"nfacct": c}, time.Minute, discard))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := g.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNfacctScrape measures the exporter's own share of a scrape of
// many nfacct objects, without the kernel: snapshot, rendering and gzip
// through the /metrics handler.
func BenchmarkNfacctScrape(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			objs := make([]nfacct.Object, n)
			for i := range objs {
				objs[i] = nfacct.Object{Name: fmt.Sprintf("ipv4.svc%d", i), Packets: uint64(i), Bytes: uint64(i) * 1500, Use: 1}
				if i%10 == 0 {
					objs[i].Flags, objs[i].Quota = nfacct.FlagQuotaBytes, 1<<30
				}
			}
			c, err := NewNfacct(fakeLister{objs: objs}, NfacctConfig{})
			if err != nil {
				b.Fatal(err)
			}
			h := exposition.NewHandler(NewSet(map[string]Collector{"nfacct": c}, time.Minute, discard), exposition.HandlerOpts{})
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
