package flow

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// benchFlows returns n flows spread over about series distinct
// family/proto/dport series.
func benchFlows(n, series int) []delta {
	r := rand.New(rand.NewPCG(3, 4))
	ds := make([]delta, n)
	for i := range ds {
		d := &ds[i]
		d.Family, d.Proto = familyIPv4, ProtoTCP
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

// BenchmarkRead measures a scrape's read of 4,096 series.
func BenchmarkRead(b *testing.B) {
	a := mustAggregator(b, Config{GroupBy: []Key{KeyFamily, KeyProto, KeyDPort}, MaxSeries: 4096})
	a.AddBatch(benchFlows(100000, 8000))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Read(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadInto measures a scrape's read of 100,000 series into a
// reused Reading, as the conntrack collector reads them: steady (no series
// added since the last read) and with 1,000 new series before each read.
func BenchmarkReadInto(b *testing.B) {
	const n = 100000
	ds := make([]delta, n+1000*1000)
	for i := range ds {
		ds[i] = delta{Family: familyIPv4, Proto: ProtoTCP,
			Src: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), DPort: 443, OrigBytes: 1}
	}
	for _, added := range []int{0, 1000} {
		b.Run(fmt.Sprintf("series=%d/added=%d", n, added), func(b *testing.B) {
			a := mustAggregator(b, Config{GroupBy: []Key{KeyFamily, KeyProto, KeySrc, KeyDPort}, MaxSeries: len(ds) + 1})
			a.AddBatch(ds[:n])
			var r Reading
			next := n
			b.ReportAllocs()
			for b.Loop() {
				if added > 0 && next+added <= len(ds) {
					a.AddBatch(ds[next : next+added])
					next += added
				}
				if err := a.ReadInto(context.Background(), &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSeriesMemory(b *testing.B) {
	const n = 100000
	ds := make([]delta, n)
	for i := range ds {
		ds[i] = delta{Family: familyIPv4, Proto: ProtoTCP,
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

// BenchmarkDumped measures live accounting's part of a dump for a table of
// 1,000,000 flows already tracked: per entry, the flow's state is read and
// updated and its series counted.
func BenchmarkDumped(b *testing.B) {
	keys, _ := ParseGroupBy(DefaultGroupBy)
	a, err := newAggregator(Config{GroupBy: keys, MaxSeries: 4096, Live: true})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1 << 20
	es := make([]ctnl.Flow, n)
	for i := range es {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0xc6120000|uint32(i>>14))
		es[i] = ctnl.Flow{Family: familyIPv4, Orig: ctnl.Tuple{Proto: ProtoUDP, Src: netip.AddrFrom4(src), Dst: netip.MustParseAddr("198.19.0.1"),
			SPort: uint16(1024 + i%16384), DPort: uint16(53 + i%5)}, ID: uint32(i) * 2654435761, Start: 1, OrigPackets: 1, OrigBytes: 100}
	}
	dump := func() {
		a.beginDump()
		for i := 0; i < n; i += 256 {
			a.countDumped(es[i : i+256])
		}
		a.endDump(true, 0)
	}
	dump()
	runtime.GC()
	cpu0 := processCPU()
	b.ResetTimer()
	for b.Loop() {
		dump()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/entry")
}

// processCPU returns the processor time of the process: unlike wall time,
// it does not count the time other processes of a busy host take.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAddNewSeries measures what an ended flow costs when it makes a
// series of its own, as with --conntrack.group-by=family,proto,src,sport,dport:
// the cost per event of a burst of distinct flows.
func BenchmarkAddNewSeries(b *testing.B) {
	const batch = 1024
	a := mustAggregator(b, Config{GroupBy: []Key{KeyFamily, KeyProto, KeySrc, KeySPort, KeyDPort}, MaxSeries: 1 << 30})
	ds := benchFlows(batch, 1000)
	b.ReportAllocs()
	n := uint32(0)
	for b.Loop() {
		for i := range ds {
			n++
			ds[i].Src = netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
		}
		a.AddBatch(ds)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/series")
}

// BenchmarkDumpedTop measures live accounting's part of a dump of
// 1,000,000 tracked flows with top talkers off and on (count 10, the
// default capacity of 8192 keys), side by side in each iteration, in turn
// first: idle, where no flow moved since the previous dump (no delta
// reaches the talkers), and moving, where every flow moved, from 64 or
// from 65,536 sources (over the capacity: the talkers evict). It reports
// the processor time per entry of each and their ratio.
func BenchmarkDumpedTop(b *testing.B) {
	keys, _ := ParseGroupBy(DefaultGroupBy)
	const n = 1 << 20
	for _, bc := range []struct {
		name    string
		moving  bool
		sources int
	}{{"idle", false, 64}, {"moving/sources=64", true, 64}, {"moving/sources=65536", true, 65536}} {
		b.Run(bc.name, func(b *testing.B) {
			es := make([]ctnl.Flow, n)
			for i := range es {
				var src [4]byte
				binary.BigEndian.PutUint32(src[:], 0xc6120000|uint32(i%bc.sources))
				es[i] = ctnl.Flow{Family: familyIPv4, Orig: ctnl.Tuple{Proto: ProtoUDP, Src: netip.AddrFrom4(src), Dst: netip.MustParseAddr("198.19.0.1"),
					SPort: uint16(1024 + i%16384), DPort: uint16(53 + i%5)}, ID: uint32(i) * 2654435761, Start: 1, OrigPackets: 1, OrigBytes: 100}
				es[i].Reply = ctnl.Tuple{Proto: ProtoUDP, Src: es[i].Orig.Dst, Dst: es[i].Orig.Src, SPort: es[i].Orig.DPort, DPort: es[i].Orig.SPort}
			}
			off, err := newAggregator(Config{GroupBy: keys, MaxSeries: 4096, Live: true})
			if err != nil {
				b.Fatal(err)
			}
			on, err := newAggregator(Config{GroupBy: keys, MaxSeries: 4096, Live: true, Top: TopConfig{Count: 10, By: []Key{KeySrc},
				Window: DefaultTopWindow, Capacity: DefaultTopCapacity, IPv4Bits: DefaultTopIPv4Bits, IPv6Bits: DefaultTopIPv6Bits}})
			if err != nil {
				b.Fatal(err)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			dump := func(a *aggregator) time.Duration {
				cpu0 := ctnl.ThreadCPU()
				a.beginDump()
				for i := 0; i < n; i += 256 {
					a.countDumped(es[i : i+256])
				}
				a.endDump(true, 0)
				return ctnl.ThreadCPU() - cpu0
			}
			dump(off)
			dump(on)
			runtime.GC()
			var cpuOff, cpuOn time.Duration
			i := 0
			for b.Loop() {
				if bc.moving {
					for j := range es {
						es[j].OrigPackets++
						es[j].OrigBytes += 100 + uint64(j&1023)
						es[j].ReplyPackets++
						es[j].ReplyBytes += 60
					}
				}
				if i%2 == 0 {
					cpuOff += dump(off)
					cpuOn += dump(on)
				} else {
					cpuOn += dump(on)
					cpuOff += dump(off)
				}
				i++
			}
			if bc.moving {
				if r := on.readTop(true); len(r.Talkers) != 10 || len(r.Flows) != DefaultTopFlows {
					b.Fatalf("%d talkers and %d flows, want 10 and %d", len(r.Talkers), len(r.Flows), DefaultTopFlows)
				}
			}
			b.ReportMetric(float64(cpuOff.Nanoseconds())/float64(b.N*n), "off-cpu-ns/entry")
			b.ReportMetric(float64(cpuOn.Nanoseconds())/float64(b.N*n), "on-cpu-ns/entry")
			b.ReportMetric(float64(cpuOn)/float64(cpuOff), "on/off")
		})
	}
}

// BenchmarkTopMemory measures the heap the top talkers take at the default
// capacity when a table of 1,000,000 flows from 1,000,000 sources moves in
// every step of the window: each of the six buckets full, the round's
// pending sums and largest flows at their bounds, a reading's scratch
// grown.
func BenchmarkTopMemory(b *testing.B) {
	const n = 1_000_000
	es := make([]ctnl.Flow, n)
	for i := range es {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0x0a000000|uint32(i))
		es[i] = ctnl.Flow{Family: familyIPv4, Orig: ctnl.Tuple{Proto: ProtoTCP, Src: netip.AddrFrom4(src), Dst: netip.MustParseAddr("198.19.0.1"),
			SPort: uint16(1024 + i%50000), DPort: 443}}
		es[i].Reply = ctnl.Tuple{Proto: ProtoTCP, Src: es[i].Orig.Dst, Dst: es[i].Orig.Src, SPort: 443, DPort: es[i].Orig.SPort}
	}
	var used uint64
	for b.Loop() {
		clk := &topClock{now: time.Unix(0, 0)}
		before := heapAlloc()
		tk, err := newTalkers(TopConfig{Count: 10, By: []Key{KeySrc}, Window: DefaultTopWindow, Capacity: DefaultTopCapacity,
			IPv4Bits: DefaultTopIPv4Bits, IPv6Bits: DefaultTopIPv6Bits}, clk.Now)
		if err != nil {
			b.Fatal(err)
		}
		for step := range 6 {
			tk.beginRound()
			// Each step in another order, so that each bucket ends up
			// holding other sources.
			for j := range es {
				i := (j + step*n/6) % n
				c := [4]uint64{1, uint64(100 + (i+step)%1400), 1, 60}
				tk.dumped(&es[i], &c)
			}
			tk.endRound(true)
			if step < 5 {
				clk.now = clk.now.Add(DefaultTopWindow / 6)
			}
		}
		r := tk.read(true)
		if len(r.Talkers) != 10 || r.Tracked < 5*DefaultTopCapacity {
			b.Fatalf("%d talkers, %d tracked", len(r.Talkers), r.Tracked)
		}
		used = heapAlloc() - before
		runtime.KeepAlive(tk)
	}
	b.ReportMetric(float64(used)/(1<<20), "MB")
}

// heapAlloc returns the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkDestroyedTop measures a burst of 1,000,000 DESTROY events with
// counters, in batches of 256 as the listener delivers them when it is
// behind, or of 16 as it does when it keeps up with the kernel, with live
// accounting on (the default) and top talkers off and on (count 10, the
// default capacity), side by side in each iteration, in turn first: from
// 64 or from 65,536 sources. It reports the processor time per event of
// each and their ratio.
func BenchmarkDestroyedTop(b *testing.B) {
	keys, _ := ParseGroupBy(DefaultGroupBy)
	const n = 1 << 20
	for _, tc := range []struct{ sources, batch int }{{64, 256}, {65536, 256}, {64, 16}, {65536, 16}} {
		sources, batch := tc.sources, tc.batch
		name := fmt.Sprintf("sources=%d", sources)
		if batch != 256 {
			name += fmt.Sprintf("/batch=%d", batch)
		}
		b.Run(name, func(b *testing.B) {
			es := make([]ctnl.Flow, n)
			for i := range es {
				var src [4]byte
				binary.BigEndian.PutUint32(src[:], 0xc6120000|uint32(i%sources))
				es[i] = ctnl.Flow{Family: familyIPv4, Orig: ctnl.Tuple{Proto: ProtoUDP, Src: netip.AddrFrom4(src), Dst: netip.MustParseAddr("198.19.0.1"),
					SPort: uint16(1024 + i%16384), DPort: uint16(53 + i%5)},
					OrigPackets: 2, OrigBytes: 100 + uint64(i&1023), ReplyPackets: 1, ReplyBytes: 60}
				es[i].Reply = ctnl.Tuple{Proto: ProtoUDP, Src: es[i].Orig.Dst, Dst: es[i].Orig.Src, SPort: es[i].Orig.DPort, DPort: es[i].Orig.SPort}
			}
			off, err := newAggregator(Config{GroupBy: keys, MaxSeries: 4096, Live: true})
			if err != nil {
				b.Fatal(err)
			}
			on, err := newAggregator(Config{GroupBy: keys, MaxSeries: 4096, Live: true, Top: TopConfig{Count: 10, By: []Key{KeySrc},
				Window: DefaultTopWindow, Capacity: DefaultTopCapacity, IPv4Bits: DefaultTopIPv4Bits, IPv6Bits: DefaultTopIPv6Bits}})
			if err != nil {
				b.Fatal(err)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			id := uint32(0)
			burst := func(a *aggregator) time.Duration {
				cpu0 := ctnl.ThreadCPU()
				for i := 0; i < n; i += batch {
					a.countDestroyed(es[i : i+batch])
				}
				cpu := ctnl.ThreadCPU() - cpu0
				// The tombstones go with the next dump.
				a.beginDump()
				a.endDump(true, 0)
				return cpu
			}
			var cpuOff, cpuOn time.Duration
			i := 0
			for b.Loop() {
				for j := range es {
					id++
					es[j].ID = id
				}
				if i%2 == 0 {
					cpuOff += burst(off)
					cpuOn += burst(on)
				} else {
					cpuOn += burst(on)
					cpuOff += burst(off)
				}
				i++
			}
			if r := on.readTop(true); len(r.Talkers) != 10 {
				b.Fatalf("%d talkers, want 10", len(r.Talkers))
			}
			b.ReportMetric(float64(cpuOff.Nanoseconds())/float64(b.N*n), "off-cpu-ns/event")
			b.ReportMetric(float64(cpuOn.Nanoseconds())/float64(b.N*n), "on-cpu-ns/event")
			b.ReportMetric(float64(cpuOn)/float64(cpuOff), "on/off")
		})
	}
}

// burstFlow is one flow of BenchmarkDestroyBurst's bursts: its index in
// the burst, which makes its tuple, and its kernel id.
type burstFlow struct{ i, id uint32 }

// burstIDs returns the n flows of a burst, with random kernel ids.
func burstIDs(n int, r *rand.Rand) []burstFlow {
	fs := make([]burstFlow, n)
	for i := range fs {
		fs[i] = burstFlow{uint32(i), r.Uint32()}
	}
	return fs
}

// fill makes es the events or entries of fs, as the listener decodes them
// into the one batch it reuses: UDP flows with ctburst's tuples, no counters
// or timestamps (nf_conntrack_acct and nf_conntrack_timestamp off).
func fill(es []ctnl.Flow, fs []burstFlow) []ctnl.Flow {
	ports := [...]uint16{53, 80, 123, 443, 8080}
	dst := netip.AddrFrom4([4]byte{198, 19, 0, 1})
	es = es[:len(fs)]
	for n, f := range fs {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0xc6120000|f.i>>14)
		e := &es[n]
		*e = ctnl.Flow{Family: familyIPv4, ID: f.id}
		e.Orig = ctnl.Tuple{Proto: ProtoUDP, Src: netip.AddrFrom4(src), Dst: dst, SPort: uint16(1024 + f.i%16384), DPort: ports[f.i%uint32(len(ports))]}
		e.Reply = ctnl.Tuple{Proto: ProtoUDP, Src: dst, Dst: e.Orig.Src, SPort: e.Orig.DPort, DPort: e.Orig.SPort}
	}
	return es
}

// BenchmarkDestroyBurst measures the pipeline's part of a burst of
// 1,000,000 DESTROY events of distinct flows, in the listener's batches of
// 256, with live accounting off and on, side by side: on, with flows no dump
// has listed (short flows, or flows younger than the latest dump: the common
// case) and with flows the latest dump listed, in another order (a flush
// walks the kernel's table by reply tuple, a dump by original tuple). Each
// iteration is one burst; between bursts (not timed) a dump finishes, which
// drops the burst's tombstones, and lists the next burst's flows where they
// are to be seen. ns/event includes filling the batch, the same for all.
//
//	go test -run '^$' -bench DestroyBurst -benchtime 3x ./flow/
func BenchmarkDestroyBurst(b *testing.B) {
	const n, batch = 1000000, 256
	keys, _ := ParseGroupBy(DefaultGroupBy)
	for _, bc := range []struct {
		name       string
		live, seen bool
	}{
		{"live=off", false, false},
		{"live=on/unseen", true, false},
		{"live=on/seen", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a, err := newAggregator(Config{GroupBy: keys, MaxSeries: 4096, Live: bc.live})
			if err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 6))
			es := make([]ctnl.Flow, batch)
			dump := func(fs []burstFlow) {
				a.beginDump()
				for i := 0; i < len(fs); i += batch {
					a.countDumped(fill(es, fs[i:min(i+batch, len(fs))]))
				}
				a.endDump(true, 0)
			}
			dump(nil) // the baseline
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				fs := burstIDs(n, r)
				if bc.seen {
					dump(fs)
					r.Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
				}
				runtime.GC()
				cpu0 := processCPU()
				b.StartTimer()
				for i := 0; i < n; i += batch {
					a.countDestroyed(fill(es, fs[i:min(i+batch, n)]))
				}
				b.StopTimer()
				cpu += processCPU() - cpu0
				dump(nil)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/event")
		})
	}
}
