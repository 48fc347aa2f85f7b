package ctnl_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

// flowKey is the key netnstest.CTEntry.Key gives the same flow.
func flowKey(f ctnl.Flow) string {
	port := func(p uint16) string {
		if p == 0 {
			return "" // ICMP: conntrack prints type, code and id instead
		}
		return strconv.Itoa(int(p))
	}
	return protoName(f.Orig.Proto) + " " + strings.Join([]string{f.Orig.Src.String(), f.Orig.Dst.String(), port(f.Orig.SPort), port(f.Orig.DPort)}, " ")
}

func TestKernelDestroyEventsMatchConntrackList(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.Link(t, a, b, "2001:db8::1/64", "2001:db8::2/64")
	netnstest.TrackConnections(t, b)

	h, err := netns.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, s := range []string{ctnl.SysctlAcct, ctnl.SysctlTimestamp} {
		if on, err := ctnl.ReadSysctl(h.FD(), s); err != nil || !on {
			t.Fatalf("ReadSysctl(%s) = %v, %v; want true after sysctl -w", s, on, err)
		}
	}
	l, err := ctnl.Listen(ctnl.ListenConfig{NetNS: h.FD(), ReadBuffer: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	netnstest.TCPExchange(t, a, b, "tcp4", "192.0.2.2:8080", 10000)
	netnstest.TCPExchange(t, a, b, "tcp6", "[2001:db8::2]:8443", 3000)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 5, 100)
	netnstest.UDPExchange(t, a, b, "udp6", "[2001:db8::2]:9001", 3, 200)
	netnstest.ICMPEcho(t, a, "192.0.2.2", 4)

	want := make(map[string]netnstest.CTEntry)
	for _, e := range netnstest.SettledConntrackList(t, b) {
		want[e.Key()] = e
	}
	if len(want) != 5 {
		t.Fatalf("conntrack lists %d entries, want 5: %+v", len(want), want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(map[string]ctnl.Flow)
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(fs []ctnl.Flow) {
			for _, f := range fs {
				got[flowKey(f)] = f
			}
			if len(got) == len(want) {
				cancel()
			}
		})
	}()
	// Destroy every entry of this test's own namespace.
	b.Run(t, "conntrack", "-F")
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	for k, w := range want {
		f, ok := got[k]
		if !ok {
			t.Errorf("no DESTROY event for %s; got %v", k, keys(got))
			continue
		}
		if f.OrigPackets != w.OrigPackets || f.OrigBytes != w.OrigBytes || f.ReplyPackets != w.ReplyPackets || f.ReplyBytes != w.ReplyBytes {
			t.Errorf("%s: event counters orig %d/%d reply %d/%d, conntrack -L said orig %d/%d reply %d/%d", k,
				f.OrigPackets, f.OrigBytes, f.ReplyPackets, f.ReplyBytes, w.OrigPackets, w.OrigBytes, w.ReplyPackets, w.ReplyBytes)
		}
		if f.OrigPackets == 0 || f.ReplyBytes == 0 {
			t.Errorf("%s: counters are zero; is nf_conntrack_acct on? %+v", k, f)
		}
		if f.Reply.Src != netip.MustParseAddr(w.Reply[0]) || f.Reply.Dst != netip.MustParseAddr(w.Reply[1]) {
			t.Errorf("%s: reply tuple %v -> %v, conntrack -L said %s -> %s", k, f.Reply.Src, f.Reply.Dst, w.Reply[0], w.Reply[1])
		}
		if f.Start == 0 || f.Stop < f.Start || time.Duration(f.Stop-f.Start) > time.Minute {
			t.Errorf("%s: timestamps start %d stop %d; is nf_conntrack_timestamp on?", k, f.Start, f.Stop)
		}
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 5 || st.Drops != 0 || st.DecodeErrors != 0 {
		t.Errorf("listener stats = %+v, want 5 events, no drops, no decode errors", st)
	}
	if st.ReadBuffer < 8<<20 {
		t.Errorf("receive buffer = %d bytes, want at least the 8 MiB asked for", st.ReadBuffer)
	}
}

func TestKernelTableStats(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "sysctl")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 1, 10)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9001", 1, 10)

	h, err := netns.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := ctnl.Dial(&ctnl.Config{NetNS: h.FD(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.TableStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Entries != 2 {
		t.Errorf("entries = %d, want the 2 UDP flows", s.Entries)
	}
	if s.MaxEntries == 0 || s.CPUs == 0 {
		t.Errorf("max entries %d, CPUs %d: want both > 0", s.MaxEntries, s.CPUs)
	}
	if s.Insert != 0 && s.Insert < 2 {
		t.Errorf("insert = %d, want at least 2", s.Insert)
	}
}

// TestKernelTableStatsAfterTimeout provokes real timeouts: readings with
// deadlines of a few microseconds, many of which expire after the request
// was sent, so that the kernel's answer arrives after the reader gave up
// and waits in the socket. Each must leave the Client working: the reading
// after it, with time enough, must succeed. (Before the socket was replaced
// after a failure, it failed with "mismatched sequence in netlink reply",
// and so did every reading after it.)
func TestKernelTableStatsAfterTimeout(t *testing.T) {
	netnstest.Require(t)
	b := netnstest.New(t)
	h, err := netns.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := ctnl.Dial(&ctnl.Config{NetNS: h.FD(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cut := 0
	for i := range 200 {
		d := time.Duration(i%50) * time.Microsecond
		ctx, cancel := context.WithTimeout(context.Background(), d)
		_, errCut := c.TableStats(ctx)
		cancel()
		if errCut != nil {
			if !errors.Is(errCut, context.DeadlineExceeded) && !errors.Is(errCut, os.ErrDeadlineExceeded) {
				t.Fatalf("a reading with a deadline of %v failed with %v, want a timeout", d, errCut)
			}
			cut++
		}
		if _, err := c.TableStats(context.Background()); err != nil {
			t.Fatalf("the reading after one with a deadline of %v (%v) failed: %v", d, errCut, err)
		}
	}
	if cut == 0 {
		t.Fatal("no reading was cut short by its deadline: the test proved nothing")
	}
	t.Logf("%d of 200 readings cut short by their deadline; every reading after them succeeded", cut)
}

func keys(m map[string]ctnl.Flow) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestKernelTableStatsInsertAndFound checks what the insert and found
// counters count, as collector.ConntrackStats documents them: entries
// created through ctnetlink (conntrack -I) raise insert, and NAT finding its
// first choice of tuple already taken raises found. Recent kernels (6.18
// measured) count nothing else there: the entries packets create raise
// neither, so on most hosts both read 0.
func TestKernelTableStatsInsertAndFound(t *testing.T) {
	netnstest.Require(t, "iptables", "conntrack")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.TrackConnections(t, b)
	h, err := netns.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := ctnl.Dial(&ctnl.Config{NetNS: h.FD(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stats := func() ctnl.TableStats {
		t.Helper()
		s, err := c.TableStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := stats()
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9000", 1, 10)
	netnstest.UDPExchange(t, a, b, "udp4", "192.0.2.2:9001", 1, 10)
	afterPackets := stats()
	t.Logf("2 entries made by packets: insert %d -> %d, found %d -> %d", before.Insert, afterPackets.Insert, before.Found, afterPackets.Found)
	for _, port := range []string{"1000", "1001"} {
		b.Run(t, "conntrack", "-I", "-p", "udp", "-s", "198.51.100.1", "-d", "198.51.100.2", "--sport", port, "--dport", "53", "-t", "60")
	}
	after := stats()
	if got := after.Insert - afterPackets.Insert; got != 2 {
		t.Errorf("insert rose by %d for 2 entries created with conntrack -I, want 2", got)
	}
	if after.Entries != afterPackets.Entries+2 {
		t.Errorf("entries %d -> %d, want 2 more", afterPackets.Entries, after.Entries)
	}

	// Three flows from the same source port SNATed to one address: the
	// second and third find the first's reply tuple taken.
	n := netnstest.New(t)
	n.Run(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-p", "udp", "-d", "127.0.0.2", "-j", "SNAT", "--to-source", "127.0.0.1")
	hn, err := netns.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer hn.Close()
	cn, err := ctnl.Dial(&ctnl.Config{NetNS: hn.FD(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	before, err = cn.TableStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		err := n.Do(func() error {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src), Port: 5000})
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = conn.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: 53})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	after, err = cn.TableStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Found - before.Found; got != 2 {
		t.Errorf("found rose by %d for 2 SNAT tuple clashes, want 2", got)
	}
}
