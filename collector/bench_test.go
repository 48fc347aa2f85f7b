package collector

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
)

// BenchmarkNfacctGather measures snapshot and Prometheus gathering for many
// objects, without the kernel: the exporter's own share of a scrape.
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
			reg := prometheus.NewRegistry()
			reg.MustRegister(NewPrometheus(NewSet(map[string]Collector{"nfacct": c}, time.Minute, discard)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
