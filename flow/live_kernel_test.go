package flow

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// benchTableFlows is the table size of the live accounting benchmark:
// NFE_BENCH_FLOWS, 1,000,000 by default.
func benchTableFlows(b *testing.B) int {
	if s := os.Getenv("NFE_BENCH_FLOWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("NFE_BENCH_FLOWS=%q is not a positive number", s)
		}
		return n
	}
	return 1000000
}

// bareDump dumps the table of the namespace fd with raw recvfrom calls into
// a 1 MiB buffer and only counts the messages: the floor any reader of the
// table pays. It returns the entries and the thread's processor time.
func bareDump(b *testing.B, h *netns.Handle) (int, time.Duration) {
	var fd int
	if err := h.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := ctnl.ThreadCPU()
	req := make([]byte, 20)
	*(*uint32)(unsafe.Pointer(&req[0])) = 20
	*(*uint16)(unsafe.Pointer(&req[4])) = 1<<8 | 1 // IPCTNL_MSG_CT_GET
	*(*uint16)(unsafe.Pointer(&req[6])) = 0x301    // NLM_F_REQUEST | NLM_F_DUMP
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	entries := 0
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			b.Fatal(err)
		}
		for m := buf[:n]; len(m) >= 16; {
			l := int(*(*uint32)(unsafe.Pointer(&m[0])))
			typ := *(*uint16)(unsafe.Pointer(&m[4]))
			if typ == unix.NLMSG_DONE || typ == unix.NLMSG_ERROR {
				return entries, ctnl.ThreadCPU() - cpu0
			}
			entries++
			m = m[min((l+3)&^3, len(m)):]
		}
	}
}

// BenchmarkKernelLiveDump measures live accounting on a namespace holding
// NFE_BENCH_FLOWS conntrack entries (root; it raises the host's
// nf_conntrack_max for the run). Each iteration takes one bare dump that
// only counts messages, one dump with live accounting (decode, per-flow
// state, series) and one with live accounting and top talkers on at the
// default capacity (--conntrack.top.count=10), side by side, the last two
// in turn first, and reports the processor time of each per dump and their
// ratios, and the memory each tracked flow costs: in the flow table
// (outside the Go heap) and on the heap.
//
//	go test -run '^$' -bench KernelLiveDump -benchtime 5x ./flow/
func BenchmarkKernelLiveDump(b *testing.B) {
	netnstest.Require(b)
	benchLiveDump(b, func(ns *netnstest.NS, n int) error { return ctload.Create(ns.FD(), n) }, nil)
}

// BenchmarkKernelMovedDump is BenchmarkKernelLiveDump on a table whose
// every flow moved since the previous dump, as on a busy firewall: the
// flows are made by a packet each (ctload.CreateTraffic), from 64 sources
// or from 65,536 (8 times the default capacity of the top talkers), and
// each flow sends one more packet before each iteration's dumps, outside
// the time measured.
//
//	go test -run '^$' -bench KernelMovedDump -benchtime 3x ./flow/
func BenchmarkKernelMovedDump(b *testing.B) {
	netnstest.Require(b, "nft")
	for _, sources := range []int{64, 65536} {
		b.Run(fmt.Sprintf("sources=%d", sources), func(b *testing.B) {
			benchLiveDump(b, func(ns *netnstest.NS, n int) error {
				ns.Run(b, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=600")
				return ctload.CreateTraffic(ns.Name, ns.FD(), n, sources)
			}, func(ns *netnstest.NS, n int) error {
				return ctload.SendTraffic(ns.FD(), n, sources)
			})
		})
	}
}

// benchLiveDump runs BenchmarkKernelLiveDump's iterations on a table that
// create fills with n flows; move, when not nil, runs before each
// iteration, outside the time measured.
func benchLiveDump(b *testing.B, create, move func(ns *netnstest.NS, n int) error) {
	n := benchTableFlows(b)
	restore, err := ctload.RaiseLimits(n)
	if err != nil {
		b.Fatal(err)
	}
	defer restore()
	ns := netnstest.New(b)
	ns.Run(b, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1", "net.netfilter.nf_conntrack_timestamp=1")
	if err := create(ns, n); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ctload.Flush(ns.FD()) }()
	h, err := netns.Open(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()

	keys, _ := ParseGroupBy(DefaultGroupBy)
	ctx := context.Background()
	// open returns the poller of a pipeline with its own dumper, after
	// its baseline dump, and the heap it took.
	open := func(top TopConfig) (*Pipeline, *poller, uint64) {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		p, err := New(Config{GroupBy: keys, MaxSeries: 4096, Live: true, Top: top})
		if err != nil {
			b.Fatal(err)
		}
		d, err := ctnl.DialDumper(&ctnl.DumpConfig{NetNS: h.FD(), ReadSize: readSize()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Close() })
		if err := p.Open(h.FD(), func() (Conns, error) {
			return Conns{Listener: &FakeListener{Done: make(chan struct{})}, Dumper: d}, nil
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := p.cur.poll.round(ctx); err != nil { // the baseline
			b.Fatal(err)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if ls, _ := p.agg.liveStats(); ls.Tracked != n {
			b.Fatalf("%d flows tracked after the baseline, want %d", ls.Tracked, n)
		}
		return p, p.cur.poll, after.HeapAlloc - before.HeapAlloc
	}
	p, poll, heap := open(TopConfig{})
	pTop, pollTop, _ := open(TopConfig{Count: 10, By: []Key{KeySrc}, Window: DefaultTopWindow, Capacity: DefaultTopCapacity,
		IPv4Bits: DefaultTopIPv4Bits, IPv6Bits: DefaultTopIPv6Bits})
	ls, _ := p.agg.liveStats()
	d := poll.d.(*ctnl.Dumper)

	var bare, decode, live, liveTop time.Duration
	round := func(poll *poller) time.Duration {
		st, err := poll.round(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st.Entries != n {
			b.Fatalf("live dump: %d entries, want %d", st.Entries, n)
		}
		return st.CPU
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if move != nil {
			b.StopTimer()
			if err := move(ns, n); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		got, cpu := bareDump(b, h)
		if got != n {
			b.Fatalf("bare dump: %d entries, want %d", got, n)
		}
		bare += cpu
		st, err := d.Dump(ctx, ctnl.DumpFilter{}, func([]ctnl.Flow) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		decode += st.CPU
		if i%2 == 0 {
			live += round(poll)
			liveTop += round(pollTop)
		} else {
			liveTop += round(pollTop)
			live += round(poll)
		}
		i++
	}
	b.StopTimer()
	if move != nil {
		// The flows moved: the talkers counted what they moved.
		if r := pTop.Top(); len(r.Talkers) == 0 || r.Talkers[0].OrigBytes == 0 {
			b.Fatalf("the flows moved, but the top talkers hold %+v", r.Talkers)
		}
	}
	runs := float64(b.N)
	b.ReportMetric(bare.Seconds()/runs, "bare-cpu-s/dump")
	b.ReportMetric(decode.Seconds()/runs, "decode-cpu-s/dump")
	b.ReportMetric(live.Seconds()/runs, "live-cpu-s/dump")
	b.ReportMetric(liveTop.Seconds()/runs, "live-top-cpu-s/dump")
	b.ReportMetric(float64(live)/float64(bare), "live/bare")
	b.ReportMetric(float64(liveTop)/float64(live), "top-on/off")
	b.ReportMetric(float64(heap)/float64(n), "heap-B/flow")
	b.ReportMetric(float64(ls.TableBytes)/float64(n), "table-B/flow")
	runtime.KeepAlive(p)
	runtime.KeepAlive(pTop)
}

func readSize() int {
	n, _ := strconv.Atoi(os.Getenv("NFE_BENCH_READ"))
	return n
}
