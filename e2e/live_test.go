package e2e

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// Tests of live accounting: flows counted while they run, from table dumps,
// against the real kernel. Each needs root and makes its own namespaces.

// waitUntil scrapes e until cond holds, for at most timeout.
func waitUntil(t *testing.T, e *exporter, timeout time.Duration, what string, cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, mfs := e.scrape(t)
		if cond(mfs) {
			return mfs
		}
		if time.Now().After(deadline) {
			body, _ := e.scrape(t)
			t.Fatalf("after %v: %s; metrics:\n%s\nlog:\n%s", timeout, what, grepConntrack(body), e.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// grepConntrack keeps the conntrack lines of a /metrics body, for messages.
func grepConntrack(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "netfilter_conntrack_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// sink accepts TCP connections on l and, for each, reads everything and
// sends back one byte in ten, so that both directions carry data.
func sink(t *testing.T, l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n/10]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
}

// drain reads and drops what c receives until it is closed.
func drain(c net.Conn) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(io.Discard, c)
	}()
	return &wg
}

// closeAndSettle half-closes c, waits for the peer to close and for the
// echo to be read, so that the flow's counters no longer move.
func closeAndSettle(t *testing.T, c net.Conn, read *sync.WaitGroup) {
	t.Helper()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	read.Wait()
	c.Close()
}

// conntrackEntry returns the one entry of ns whose original destination port
// is dport, and fails when there is none or more than one. With settled, it
// waits until TCP entries are closing first.
func conntrackEntry(t *testing.T, ns *netnstest.NS, proto string, dport int, settled bool) netnstest.CTEntry {
	t.Helper()
	list := netnstest.ConntrackList
	if settled {
		list = netnstest.SettledConntrackList
	}
	var found []netnstest.CTEntry
	for _, e := range list(t, ns) {
		if e.Proto == proto && e.Orig[3] == strconv.Itoa(dport) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("conntrack -L has %d %s entries to port %d: %+v", len(found), proto, dport, found)
	}
	return found[0]
}

// udpFlows makes n UDP flows from a to addr in b, one datagram and its echo
// each, from n different source ports.
func udpFlows(t *testing.T, a, b *netnstest.NS, addr string, n int) {
	t.Helper()
	srv := b.ListenPacket(t, "udp4", addr)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteTo(buf[:n], from)
		}
	}()
	defer srv.Close()
	for i := 0; i < n; i++ {
		c := a.Dial(t, "udp4", addr)
		if _, err := c.Write(make([]byte, 100+i%50)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 2048)); err != nil {
			t.Fatalf("no echo for flow %d: %v", i, err)
		}
		c.Close()
	}
}

// waitDestroys waits until log and the exporter agree on the number of
// ended flows, and returns the log's entries and the last scrape.
func waitDestroys(t *testing.T, e *exporter, log *netnstest.DestroyLog, min int) ([]netnstest.CTEntry, map[string]*dto.MetricFamily) {
	t.Helper()
	var entries []netnstest.CTEntry
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, mfs := e.scrape(t)
		entries = log.Entries()
		flows, _ := sum(mfs, "netfilter_conntrack_flows_total", nil) // none before the first flow ends
		if len(entries) >= min && flows == float64(len(entries)) {
			return entries, mfs
		}
		if time.Now().After(deadline) {
			t.Errorf("after 20s the exporter counts %v ended flows, the reference listener %d (at least %d expected); reference: %s", flows, len(entries), min, log.Errors())
			return entries, mfs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExporterLiveCountsLongTransfer(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	log := netnstest.WatchDestroys(t, b)
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.poll-interval=100ms")
	sink(t, b.Listen(t, "tcp4", "192.0.2.2:8080"))

	c := a.Dial(t, "tcp4", "192.0.2.2:8080")
	read := drain(c)
	orig := map[string]string{"direction": "orig", "dport": "8080"}
	var seen []float64
	active := false
	const chunk, chunks = 200 << 10, 25
	for i := 0; i < chunks; i++ {
		if _, err := c.Write(make([]byte, chunk)); err != nil {
			t.Fatal(err)
		}
		// Short flows end while the long one runs and the dumps go on.
		netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:"+strconv.Itoa(9000+i), 2, 100)
		b.Run(t, "conntrack", "-D", "-p", "udp")
		time.Sleep(100 * time.Millisecond)
		_, mfs := e.scrape(t)
		// Before the first dump lists the flow, it has no series:
		// nothing counted yet.
		bytes, _ := sum(mfs, "netfilter_conntrack_flow_bytes_total", orig)
		seen = append(seen, bytes)
		if active8080, _ := sum(mfs, "netfilter_conntrack_flows_active", map[string]string{"dport": "8080"}); active8080 == 1 {
			active = true
		}
	}
	// While it runs, the flow's bytes grow scrape after scrape, and by its
	// last scrape nearly all it sent is counted.
	steps := 0
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("orig bytes went down while the flow ran: %v", seen)
		}
		if seen[i] > seen[i-1] {
			steps++
		}
	}
	if steps < chunks/2 || seen[len(seen)-1] < float64(chunk*(chunks-2)) {
		t.Errorf("orig bytes of the running flow grew in %d of %d scrapes, to %v of %d sent: %v", steps, chunks-1, seen[len(seen)-1], chunk*chunks, seen)
	}
	if !active {
		t.Errorf("netfilter_conntrack_flows_active{dport=\"8080\"} never read 1 while the flow ran")
	}
	closeAndSettle(t, c, read)
	b.Run(t, "conntrack", "-F")

	// Every ended flow, long and short, counted exactly once, to the byte,
	// in both directions.
	entries, mfs := waitDestroys(t, e, log, chunks+1)
	checkSeries(t, mfs, []string{"family", "proto", "dport"}, sumsByKey(entries, familyProtoDport))
	if n := mustValue(t, mfs, "netfilter_conntrack_dumps_total", nil); n < 10 {
		t.Errorf("%v dumps in the test, want many at 100ms", n)
	}
	if n := mustValue(t, mfs, "netfilter_conntrack_flows_closed_out_total", nil); n != 0 {
		t.Errorf("%v flows closed out without DESTROY, want 0: every flow sent one", n)
	}
}

// TestExporterLiveRaces forces the races of live accounting: dumps every
// 10ms, slowed by a small read size, while thousands of short flows are
// destroyed and long transfers run. Every flow is its own series, so the
// comparison with conntrack -E is a per-flow ledger.
func TestExporterLiveRaces(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	log := netnstest.WatchDestroys(t, b)
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--no-collector.conntrack_stats",
		"--conntrack.poll-interval=10ms", "--conntrack.dump-read-size=4096",
		"--conntrack.group-by=family,proto,src,sport,dst,dport", "--conntrack.max-series=100000")
	sink(t, b.Listen(t, "tcp4", "192.0.2.2:8080"))

	var long sync.WaitGroup
	for range 2 {
		long.Add(1)
		go func() {
			defer long.Done()
			c := a.Dial(t, "tcp4", "192.0.2.2:8080")
			read := drain(c)
			for range 40 {
				if _, err := c.Write(make([]byte, 64<<10)); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(25 * time.Millisecond)
			}
			closeAndSettle(t, c, read)
		}()
	}
	stop := make(chan struct{})
	var deleter sync.WaitGroup
	deleter.Add(1)
	go func() {
		defer deleter.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_, _ = b.Try("conntrack", "-D", "-p", "udp")
		}
	}()
	udpFlows(t, a, b, "192.0.2.2:9000", 2000)
	long.Wait()
	close(stop)
	deleter.Wait()
	b.Run(t, "conntrack", "-F")

	keys := []string{"family", "proto", "src", "sport", "dst", "dport"}
	entries, mfs := waitDestroys(t, e, log, 1900)
	want := sumsByKey(entries, func(c netnstest.CTEntry) string {
		return strings.Join([]string{c.Family, c.Proto, c.Orig[0], c.Orig[2], c.Orig[1], c.Orig[3]}, ",")
	})
	checkSeries(t, mfs, keys, want)
	// A dump walks the host's whole conntrack hash table, every
	// namespace's entries: on a host busy with other tables dumps are
	// slower, so ask only for several.
	if n := mustValue(t, mfs, "netfilter_conntrack_dumps_total", nil); n < 5 {
		body, _ := e.scrape(t)
		t.Errorf("%v dumps during the test, want many:\n%s\nlog:\n%s", n, grepConntrack(body), e.stderr)
	}
}

// TestExporterLiveStartedMidTransfer starts the exporter in the middle of a
// transfer whose flow began while no conntrack listener existed: with
// nf_conntrack_events=2 the kernel never sends its DESTROY. The exporter
// counts what moved after it started, exactly, and closes the flow out once
// it is gone.
func TestExporterLiveStartedMidTransfer(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	if v := strings.TrimSpace(b.Run(t, "sysctl", "-n", "net.netfilter.nf_conntrack_events")); v != "2" {
		t.Fatalf("nf_conntrack_events is %s in a new namespace, want the kernel's default 2", v)
	}
	// Whether a listener exists is tracked for the whole host (Linux 6.3
	// and later), and other tests may run listeners: the flow is made
	// with events off, which leaves it without events just the same.
	b.Run(t, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_events=0")
	sink(t, b.Listen(t, "tcp4", "192.0.2.2:8080"))
	c := a.Dial(t, "tcp4", "192.0.2.2:8080")
	b.Run(t, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_events=2")
	read := drain(c)
	if _, err := c.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the echo of the first megabyte
	before := conntrackEntry(t, b, "tcp", 8080, false)

	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.poll-interval=100ms")
	series := map[string]string{"dport": "8080"}
	mfs := waitUntil(t, e, 10*time.Second, "no dump listed the running flow", func(mfs map[string]*dto.MetricFamily) bool {
		v, _ := sum(mfs, "netfilter_conntrack_flows_active", series)
		return v == 1
	})
	if v := mustSum(t, mfs, "netfilter_conntrack_flow_bytes_total", series); v != 0 {
		t.Errorf("the flow's bytes from before the exporter started show as %v: want a baseline, no spike", v)
	}
	if !strings.Contains(e.stderr.String(), "net.netfilter.nf_conntrack_events") {
		t.Errorf("no warning names net.netfilter.nf_conntrack_events; log:\n%s", e.stderr)
	}

	for range 10 {
		if _, err := c.Write(make([]byte, 200<<10)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	closeAndSettle(t, c, read)
	final := conntrackEntry(t, b, "tcp", 8080, true)
	want := [4]float64{
		float64(final.OrigPackets - before.OrigPackets), float64(final.OrigBytes - before.OrigBytes),
		float64(final.ReplyPackets - before.ReplyPackets), float64(final.ReplyBytes - before.ReplyBytes),
	}
	// got reads the flow's counters; waiting, a series not there yet
	// reads 0 (want has no 0), asserting, it fails the test.
	got := func(mfs map[string]*dto.MetricFamily, assert bool) [4]float64 {
		read := func(name string, labels map[string]string) float64 {
			if assert {
				return mustSum(t, mfs, name, labels)
			}
			v, _ := sum(mfs, name, labels)
			return v
		}
		o := map[string]string{"dport": "8080", "direction": "orig"}
		r := map[string]string{"dport": "8080", "direction": "reply"}
		return [4]float64{
			read("netfilter_conntrack_flow_packets_total", o), read("netfilter_conntrack_flow_bytes_total", o),
			read("netfilter_conntrack_flow_packets_total", r), read("netfilter_conntrack_flow_bytes_total", r),
		}
	}
	waitUntil(t, e, 10*time.Second, "the exporter never counted the flow's final counters less its baseline", func(mfs map[string]*dto.MetricFamily) bool {
		return got(mfs, false) == want
	})

	// The flow leaves the table without a DESTROY event.
	b.Run(t, "conntrack", "-D", "-p", "tcp", "--dport", "8080")
	mfs = waitUntil(t, e, 10*time.Second, "the flow was not closed out", func(mfs map[string]*dto.MetricFamily) bool {
		v, _ := sum(mfs, "netfilter_conntrack_flows_total", series)
		return v == 1
	})
	if n := mustValue(t, mfs, "netfilter_conntrack_flows_closed_out_total", nil); n != 1 {
		t.Errorf("flows_closed_out_total = %v, want 1", n)
	}
	if n := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil); n != 0 {
		t.Errorf("destroy_events_total = %v: the kernel sent a DESTROY after all?", n)
	}
	if g := got(mfs, true); g != want {
		t.Errorf("after close-out: packets/bytes orig, reply = %v, want %v (final %+v less baseline %+v)", g, want, final, before)
	}
	if v := mustSum(t, mfs, "netfilter_conntrack_flows_active", series); v != 0 {
		t.Errorf("flows_active = %v after the flow is gone, want 0", v)
	}
}

// TestExporterLiveOverrunClosedOut loses DESTROY events on purpose (a tiny
// receive buffer, the exporter stopped while the table is flushed): the
// flows whose events were lost are closed out from the dumps, so every flow
// is counted once, with every byte the dumps saw.
func TestExporterLiveOverrunClosedOut(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.poll-interval=100ms",
		"--conntrack.receive-buffer=4KiB", "--conntrack.receive-buffer-max=4KiB")
	udpFlows(t, a, b, "192.0.2.2:9000", 300)
	// A source port may come twice: n is what the table holds.
	entries := netnstest.ConntrackList(t, b)
	n := len(entries)
	if n < 250 {
		t.Fatalf("conntrack -L has %d entries after 300 flows", n)
	}
	want := sumsByKey(entries, familyProtoDport)
	waitUntil(t, e, 10*time.Second, "the dumps do not list every flow", func(mfs map[string]*dto.MetricFamily) bool {
		active, _ := sum(mfs, "netfilter_conntrack_flows_active", nil)
		reply, _ := sum(mfs, "netfilter_conntrack_flow_bytes_total", map[string]string{"direction": "reply"})
		return active == float64(n) && reply == float64(want["ipv4,udp,9000"].replyBytes)
	})

	if err := e.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	b.Run(t, "conntrack", "-F")
	if err := e.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	mfs := waitUntil(t, e, 20*time.Second, "not every flow was counted as ended", func(mfs map[string]*dto.MetricFamily) bool {
		flows, _ := sum(mfs, "netfilter_conntrack_flows_total", nil)
		return flows == float64(n)
	})
	lost := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
	received := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
	closed := mustValue(t, mfs, "netfilter_conntrack_flows_closed_out_total", nil)
	if lost == 0 || received+lost != float64(n) || closed != lost {
		t.Errorf("events received %v, lost %v, flows closed out %v: want losses, received+lost = %d and every lost one closed out", received, lost, closed, n)
	}
	checkSeries(t, mfs, []string{"family", "proto", "dport"}, want)
}

// TestExporterLiveDetectsZeroing zeroes a flow's counters with
// conntrack -L -z while the exporter follows it: the reset is counted and
// nothing moved before or after it is lost.
func TestExporterLiveDetectsZeroing(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	log := netnstest.WatchDestroys(t, b)
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.nfacct", "--conntrack.poll-interval=100ms")
	sink(t, b.Listen(t, "tcp4", "192.0.2.2:8080"))
	c := a.Dial(t, "tcp4", "192.0.2.2:8080")
	read := drain(c)
	if _, err := c.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	before := conntrackEntry(t, b, "tcp", 8080, false)
	orig := map[string]string{"dport": "8080", "direction": "orig"}
	waitUntil(t, e, 10*time.Second, "no dump saw the flow's counters", func(mfs map[string]*dto.MetricFamily) bool {
		v, _ := sum(mfs, "netfilter_conntrack_flow_bytes_total", orig)
		return v == float64(before.OrigBytes)
	})
	b.Run(t, "conntrack", "-L", "-z")
	if _, err := c.Write(make([]byte, 512<<10)); err != nil {
		t.Fatal(err)
	}
	closeAndSettle(t, c, read)
	b.Run(t, "conntrack", "-F")
	entries, mfs := waitDestroys(t, e, log, 1)
	var after netnstest.CTEntry
	for _, en := range entries {
		if en.Orig[3] == "8080" {
			after = en
		}
	}
	if got, want := mustSum(t, mfs, "netfilter_conntrack_flow_bytes_total", orig), float64(before.OrigBytes+after.OrigBytes); got != want {
		t.Errorf("orig bytes %v, want %v: %d before the zeroing and %d after", got, want, before.OrigBytes, after.OrigBytes)
	}
	if n := mustValue(t, mfs, "netfilter_conntrack_flow_resets_total", nil); n < 1 {
		t.Errorf("flow_resets_total = %v, want the zeroing counted", n)
	}
}
