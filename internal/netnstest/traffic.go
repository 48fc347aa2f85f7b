package netnstest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
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

// DestroyLog records the DESTROY events of a namespace: the reference
// ledger of the final counters of every flow that tests compare the exporter
// with. It reads them on its own socket, with a 256 MiB receive buffer, and
// decodes them with github.com/ti-mo/conntrack, not with the exporter's
// decoder. (conntrack -E lost 5-15% of the events of TestExporterLiveRaces
// on a loaded two-core machine, ENOBUFS even with -b 512MiB, so it cannot be
// the reference under load.)
type DestroyLog struct {
	fd      int
	mu      sync.Mutex
	entries []CTEntry
	errs    []string
}

// Entries returns the DESTROY events received so far. It fails the test
// when the kernel dropped events for the log itself: the reference would be
// wrong.
func (l *DestroyLog) Entries() []CTEntry {
	var mem [9]uint32
	size := uint32(unsafe.Sizeof(mem))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(l.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0); errno == 0 && mem[8] > 0 {
		l.mu.Lock()
		l.errs = append(l.errs, fmt.Sprintf("the reference listener dropped %d events", mem[8]))
		l.mu.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

// Errors returns what went wrong with the log, "" when nothing did.
func (l *DestroyLog) Errors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.errs, "; ")
}

// WatchDestroys starts recording the DESTROY events of ns. It stops when
// the test ends.
func WatchDestroys(t testing.TB, ns *NS) *DestroyLog {
	t.Helper()
	l := &DestroyLog{}
	err := ns.Do(func() (err error) {
		l.fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		t.Fatalf("opening the reference listener: %v", err)
	}
	for _, step := range []func() error{
		func() error { return unix.Bind(l.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}) },
		func() error { return unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256<<20) },
		func() error {
			tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
			return unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		},
		func() error { return unix.SetsockoptInt(l.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, 3) },
	} {
		if err := step(); err != nil {
			unix.Close(l.fd)
			t.Fatalf("setting up the reference listener: %v", err)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(l.fd, buf, 0)
			if err != nil {
				if err != unix.EAGAIN && err != unix.EINTR {
					l.mu.Lock()
					l.errs = append(l.errs, err.Error())
					l.mu.Unlock()
				}
				continue
			}
			l.decode(buf[:n])
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(l.fd)
	})
	return l
}

// decode appends the DESTROY events of one datagram to the log.
func (l *DestroyLog) decode(b []byte) {
	for len(b) >= unix.NLMSG_HDRLEN {
		size := int(binary.NativeEndian.Uint32(b))
		if size < unix.NLMSG_HDRLEN || size > len(b) {
			return
		}
		var m netlink.Message
		err := m.UnmarshalBinary(b[:size])
		b = b[min((size+3)&^3, len(b)):]
		if err != nil {
			continue
		}
		var ev conntrack.Event
		if err := ev.Unmarshal(m); err != nil || ev.Type != conntrack.EventDestroy {
			continue
		}
		l.mu.Lock()
		l.entries = append(l.entries, entryOf(ev.Flow))
		l.mu.Unlock()
	}
}

// entryOf converts a flow to the CTEntry conntrack -L would print for it.
func entryOf(f *conntrack.Flow) CTEntry {
	e := CTEntry{Family: "ipv4", Proto: protoName(f.TupleOrig.Proto.Protocol)}
	if f.TupleOrig.IP.SourceAddress.Is6() && !f.TupleOrig.IP.SourceAddress.Is4In6() {
		e.Family = "ipv6"
	}
	tuple := func(t conntrack.Tuple) [4]string {
		out := [4]string{t.IP.SourceAddress.Unmap().String(), t.IP.DestinationAddress.Unmap().String()}
		if t.Proto.SourcePort != 0 || t.Proto.DestinationPort != 0 {
			out[2], out[3] = strconv.Itoa(int(t.Proto.SourcePort)), strconv.Itoa(int(t.Proto.DestinationPort))
		}
		return out
	}
	e.Orig, e.Reply = tuple(f.TupleOrig), tuple(f.TupleReply)
	e.OrigPackets, e.OrigBytes = f.CountersOrig.Packets, f.CountersOrig.Bytes
	e.ReplyPackets, e.ReplyBytes = f.CountersReply.Packets, f.CountersReply.Bytes
	e.Zone, e.Mark = strconv.Itoa(int(f.Zone)), "0x"+strconv.FormatUint(uint64(f.Mark), 16)
	return e
}

// protoName returns the name conntrack -L prints for protocol p.
func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}
