package ctnl_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// ctEntry is one line of `conntrack -L -o extended`.
type ctEntry struct {
	proto                                            string
	orig, reply                                      [4]string // src dst sport dport
	origPackets, origBytes, replyPackets, replyBytes uint64
	state                                            string
}

// key identifies an entry by its original tuple.
func (e ctEntry) key() string { return e.proto + " " + strings.Join(e.orig[:], " ") }

// conntrackList runs conntrack -L -o extended in ns, the independent
// reference reader.
func conntrackList(t *testing.T, ns *netnstest.NS, family string) map[string]ctEntry {
	t.Helper()
	out := ns.Run(t, "conntrack", "-L", "-f", family, "-o", "extended")
	m := make(map[string]ctEntry)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		e := ctEntry{proto: f[2]}
		dir := 0
		for _, tok := range f[4:] {
			k, v, ok := strings.Cut(tok, "=")
			if !ok {
				if strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == "" && e.orig[0] == "" {
					e.state = tok
				}
				continue
			}
			tuple := &e.orig
			if dir > 0 {
				tuple = &e.reply
			}
			switch k {
			case "src":
				if tuple[0] != "" {
					dir++
					tuple = &e.reply
				}
				tuple[0] = v
			case "dst":
				tuple[1] = v
			case "sport":
				tuple[2] = v
			case "dport":
				tuple[3] = v
			case "packets":
				n, _ := strconv.ParseUint(v, 10, 64)
				if dir == 0 {
					e.origPackets = n
				} else {
					e.replyPackets = n
				}
			case "bytes":
				n, _ := strconv.ParseUint(v, 10, 64)
				if dir == 0 {
					e.origBytes = n
				} else {
					e.replyBytes = n
				}
			}
		}
		m[e.key()] = e
	}
	return m
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

func flowKey(f ctnl.Flow) string {
	port := func(p uint16) string {
		if p == 0 {
			return "" // ICMP: conntrack prints type, code and id instead
		}
		return strconv.Itoa(int(p))
	}
	return protoName(f.Orig.Proto) + " " + strings.Join([]string{f.Orig.Src.String(), f.Orig.Dst.String(), port(f.Orig.SPort), port(f.Orig.DPort)}, " ")
}

// router prepares ns b to track connections with accounting and timestamps.
func trackConnections(t *testing.T, b *netnstest.NS) {
	t.Helper()
	// Conntrack only runs in a namespace once a rule needs it.
	b.Run(t, "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT")
	b.Run(t, "ip6tables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT")
	h, err := netns.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, s := range []string{ctnl.SysctlAcct, ctnl.SysctlTimestamp} {
		if err := ctnl.WriteSysctl(h, s, true); err != nil {
			t.Fatal(err)
		}
		if on, err := ctnl.ReadSysctl(h, s); err != nil || !on {
			t.Fatalf("%s = %v, %v after setting it", s, on, err)
		}
	}
}

// tcpExchange opens a TCP connection from a to addr in b, sends n bytes,
// reads them back and closes both ends.
func tcpExchange(t *testing.T, a, b *netnstest.NS, network, addr string, n int) {
	t.Helper()
	l := b.Listen(t, network, addr)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.CopyN(c, c, int64(n))
	}()
	c := a.Dial(t, network, addr)
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	wg.Wait()
}

// udpExchange sends count datagrams from a to addr in b and gets each one
// echoed.
func udpExchange(t *testing.T, a, b *netnstest.NS, network, addr string, count, size int) {
	t.Helper()
	srv := b.ListenPacket(t, network, addr)
	go func() {
		buf := make([]byte, 65536)
		for i := 0; i < count; i++ {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteTo(buf[:n], from)
		}
	}()
	c := a.Dial(t, network, addr)
	buf := make([]byte, 65536)
	for i := 0; i < count; i++ {
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// icmpEcho sends count echo requests from a to dst and waits for the replies.
func icmpEcho(t *testing.T, a *netnstest.NS, dst string, count int) {
	t.Helper()
	c := a.ListenPacket(t, "ip4:icmp", "0.0.0.0")
	for i := 0; i < count; i++ {
		msg := []byte{8, 0, 0, 0, 0x12, 0x34, 0, byte(i + 1), 'p', 'i', 'n', 'g'}
		var sum uint32
		for j := 0; j < len(msg); j += 2 {
			sum += uint32(msg[j])<<8 | uint32(msg[j+1])
		}
		sum = (sum >> 16) + (sum & 0xffff)
		sum += sum >> 16
		msg[2], msg[3] = byte(^sum>>8), byte(^sum)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no echo reply: %v", err)
			}
			if n >= 8 && buf[0] == 0 { // echo reply
				break
			}
		}
	}
}

func TestKernelDestroyEventsMatchConntrackList(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.Link(t, a, b, "2001:db8::1/64", "2001:db8::2/64")
	trackConnections(t, b)

	h, err := netns.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := ctnl.Listen(ctnl.ListenConfig{NetNS: h, ReadBuffer: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	tcpExchange(t, a, b, "tcp4", "192.0.2.2:8080", 10000)
	tcpExchange(t, a, b, "tcp6", "[2001:db8::2]:8443", 3000)
	udpExchange(t, a, b, "udp4", "192.0.2.2:9000", 5, 100)
	udpExchange(t, a, b, "udp6", "[2001:db8::2]:9001", 3, 200)
	icmpEcho(t, a, "192.0.2.2", 4)

	// Wait until the TCP connections have finished closing, so that the
	// counters no longer move, then read the reference.
	var want map[string]ctEntry
	deadline := time.Now().Add(10 * time.Second)
	for {
		want = conntrackList(t, b, "ipv4")
		for k, v := range conntrackList(t, b, "ipv6") {
			want[k] = v
		}
		settled := true
		for _, e := range want {
			if e.proto == "tcp" && e.state != "TIME_WAIT" && e.state != "CLOSE" {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
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
		if f.OrigPackets != w.origPackets || f.OrigBytes != w.origBytes || f.ReplyPackets != w.replyPackets || f.ReplyBytes != w.replyBytes {
			t.Errorf("%s: event counters orig %d/%d reply %d/%d, conntrack -L said orig %d/%d reply %d/%d", k,
				f.OrigPackets, f.OrigBytes, f.ReplyPackets, f.ReplyBytes, w.origPackets, w.origBytes, w.replyPackets, w.replyBytes)
		}
		if f.OrigPackets == 0 || f.ReplyBytes == 0 {
			t.Errorf("%s: counters are zero; is nf_conntrack_acct on? %+v", k, f)
		}
		if f.Reply.Src != netip.MustParseAddr(w.reply[0]) || f.Reply.Dst != netip.MustParseAddr(w.reply[1]) {
			t.Errorf("%s: reply tuple %v -> %v, conntrack -L said %s -> %s", k, f.Reply.Src, f.Reply.Dst, w.reply[0], w.reply[1])
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
	netnstest.Require(t, "iptables")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	trackConnections(t, b)
	udpExchange(t, a, b, "udp4", "192.0.2.2:9000", 1, 10)
	udpExchange(t, a, b, "udp4", "192.0.2.2:9001", 1, 10)

	h, err := netns.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := ctnl.Dial(h, 2*time.Second)
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

func keys(m map[string]ctnl.Flow) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
