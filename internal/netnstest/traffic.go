package netnstest

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TrackConnections makes conntrack run in ns with accounting and
// timestamps on. Conntrack only runs in a namespace once a rule needs it,
// and the two settings apply to flows created after they are set.
func TrackConnections(t testing.TB, ns *NS) {
	t.Helper()
	for _, ipt := range []string{"iptables", "ip6tables"} {
		ns.Run(t, ipt, "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT")
		ns.Run(t, ipt, "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT")
	}
	ns.Run(t, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1", "net.netfilter.nf_conntrack_timestamp=1")
}

// TCPExchange opens a TCP connection from a to addr in b, sends n bytes,
// reads them back and closes both ends.
func TCPExchange(t testing.TB, a, b *NS, network, addr string, n int) {
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
	l.Close()
}

// UDPExchange sends count datagrams of size bytes from a to addr in b and
// waits for each to be echoed.
func UDPExchange(t testing.TB, a, b *NS, network, addr string, count, size int) {
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
	c.Close()
}

// ICMPEcho sends count ICMP echo requests from a to the IPv4 address dst
// and waits for each reply.
func ICMPEcho(t testing.TB, a *NS, dst string, count int) {
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
				t.Fatalf("no echo reply from %s: %v", dst, err)
			}
			if n >= 8 && buf[0] == 0 {
				break
			}
		}
	}
	c.Close()
}

// CTEntry is one entry of `conntrack -L -o extended`.
type CTEntry struct {
	Family string // ipv4 or ipv6
	Proto  string // tcp, udp, icmp...
	State  string // TCP state, "" for other protocols
	// Orig and Reply are src, dst, sport and dport; ports are "" for
	// protocols without them.
	Orig, Reply                                      [4]string
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
	Zone, Mark                                       string
}

// Key identifies an entry by protocol and original tuple.
func (e CTEntry) Key() string { return e.Proto + " " + strings.Join(e.Orig[:], " ") }

// ConntrackList runs `conntrack -L -o extended` for both families in ns:
// the reference reader that tests compare the exporter with.
func ConntrackList(t testing.TB, ns *NS) []CTEntry {
	t.Helper()
	var entries []CTEntry
	for _, family := range []string{"ipv4", "ipv6"} {
		out := ns.Run(t, "conntrack", "-L", "-f", family, "-o", "extended")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) >= 5 {
				entries = append(entries, parseCTLine(f))
			}
		}
	}
	return entries
}

func parseCTLine(f []string) CTEntry {
	e := CTEntry{Family: f[0], Proto: f[2]}
	dir := 0
	for _, tok := range f[4:] {
		k, v, ok := strings.Cut(tok, "=")
		if !ok {
			if strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == "" && e.Orig[0] == "" {
				e.State = tok
			}
			continue
		}
		tuple := &e.Orig
		if dir > 0 {
			tuple = &e.Reply
		}
		switch k {
		case "src":
			if tuple[0] != "" {
				dir++
				tuple = &e.Reply
			}
			tuple[0] = v
		case "dst":
			tuple[1] = v
		case "sport":
			tuple[2] = v
		case "dport":
			tuple[3] = v
		case "packets", "bytes":
			n, _ := strconv.ParseUint(v, 10, 64)
			switch {
			case k == "packets" && dir == 0:
				e.OrigPackets = n
			case k == "packets":
				e.ReplyPackets = n
			case dir == 0:
				e.OrigBytes = n
			default:
				e.ReplyBytes = n
			}
		case "zone":
			e.Zone = v
		case "mark":
			e.Mark = v
		}
	}
	return e
}

// SettledConntrackList waits until no TCP entry of ns is still closing, so
// that the counters no longer move, and returns the entries.
func SettledConntrackList(t testing.TB, ns *NS) []CTEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries := ConntrackList(t, ns)
		settled := true
		for _, e := range entries {
			if e.Proto == "tcp" && e.State != "TIME_WAIT" && e.State != "CLOSE" {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			return entries
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SendUDP sends count datagrams of size bytes of payload from ns to the
// IPv4 address dst ("host:port"), without waiting for answers.
func SendUDP(t testing.TB, ns *NS, dst string, count, size int) {
	t.Helper()
	c := ns.Dial(t, "udp4", dst)
	payload := make([]byte, size)
	for i := 0; i < count; i++ {
		if _, err := c.Write(payload); err != nil {
			t.Fatalf("sending datagram %d to %s: %v", i, dst, err)
		}
	}
}

// NfacctList runs `nfacct list` in ns, the independent reference reader of
// nfacct counters, and returns packets and bytes by object name. Lines look
// like "{ pkts = 00000000000000000005, bytes = 00000000000000000640 } = name;".
func NfacctList(t testing.TB, ns *NS) map[string][2]uint64 {
	t.Helper()
	m := make(map[string][2]uint64)
	for _, line := range strings.Split(strings.TrimSpace(ns.Run(t, "nfacct", "list")), "\n") {
		if line == "" {
			continue
		}
		var pkts, bytes uint64
		if _, err := fmt.Sscanf(line, "{ pkts = %d, bytes = %d", &pkts, &bytes); err != nil {
			t.Fatalf("parsing nfacct list line %q: %v", line, err)
		}
		i := strings.LastIndex(line, "} = ")
		if i < 0 {
			t.Fatalf("no name in nfacct list line %q", line)
		}
		m[strings.TrimSuffix(line[i+4:], ";")] = [2]uint64{pkts, bytes}
	}
	return m
}
