package flow

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// benchFlows returns n flows spread over about series distinct
// family/proto/dport series.
func benchFlows(n, series int) []Delta {
	r := rand.New(rand.NewPCG(3, 4))
	ds := make([]Delta, n)
	for i := range ds {
		d := &ds[i]
		d.Family, d.Proto = FamilyIPv4, ProtoTCP
		if r.IntN(4) == 0 {
			d.Proto = ProtoUDP
		}
		d.Src = netip.AddrFrom4([4]byte{192, 168, byte(r.IntN(256)), byte(r.IntN(256))})
		d.Dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(r.IntN(256))})
		d.SPort, d.DPort = uint16(32768+r.IntN(28000)), uint16(r.IntN(series/2))
		d.ReplySrc, d.ReplyDst, d.ReplySPort, d.ReplyDPort = d.Dst, d.Src, d.DPort, d.SPort
		d.OrigPackets, d.OrigBytes = 10, 1500
		d.ReplyPackets, d.ReplyBytes = 20, 30000
		d.Final = true
	}
	return ds
}

func BenchmarkAdd(b *testing.B) {
	a := mustAggregator(b, Config{GroupBy: []Key{KeyFamily, KeyProto, KeyDPort}, MaxSeries: 4096})
	d := benchFlows(1, 2)[0]
	a.Add(&d)
	b.ReportAllocs()
	for b.Loop() {
		a.Add(&d)
	}
}

func BenchmarkAddBatch(b *testing.B) {
	nets, err := NewNetworks(map[string][]netip.Prefix{"lan": prefixes("192.168.0.0/16"), "dmz": prefixes("198.51.100.0/24")})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"default", Config{GroupBy: []Key{KeyFamily, KeyProto, KeyDPort}}},
		{"nets_nat", Config{GroupBy: []Key{KeySrcNet, KeyDstNet, KeyProto, KeyDPort, KeyNAT}, Networks: nets}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.cfg.MaxSeries = 4096
			a := mustAggregator(b, bc.cfg)
			batch := benchFlows(1024, 1000)
			a.AddBatch(batch)
			b.ReportAllocs()
			for b.Loop() {
				a.AddBatch(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/delta")
		})
	}
}

func BenchmarkUpdate(b *testing.B) {
	a := mustAggregator(b, Config{GroupBy: []Key{KeyFamily, KeyProto, KeyDPort}, MaxSeries: 4096})
	a.AddBatch(benchFlows(100000, 8000))
	b.ReportAllocs()
	var tb tree.Builder
	for b.Loop() {
		tb.Reset()
		if err := a.Update(context.Background(), &tb); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeriesMemory(b *testing.B) {
	const n = 100000
	ds := make([]Delta, n)
	for i := range ds {
		ds[i] = Delta{Family: FamilyIPv4, Proto: ProtoTCP,
			Src: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), DPort: 443, OrigBytes: 1}
	}
	for b.Loop() {
		a := mustAggregator(b, Config{GroupBy: []Key{KeyFamily, KeyProto, KeySrc, KeyDPort}, MaxSeries: n})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a.AddBatch(ds)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := a.Stats().Series; got != n {
			b.Fatalf("%d series, want %d", got, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/series")
		runtime.KeepAlive(a)
	}
}
