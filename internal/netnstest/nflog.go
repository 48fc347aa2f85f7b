package netnstest

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NflogRuleset is the nft ruleset of NewNflogFixture: log statements with
// and without prefixes, to groups 5 and 6, each rule with its own named
// counter.
const NflogRuleset = `
table inet logging {
	counter c_ssh { }
	counter c_udp6 { }
	counter c_plain { }
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 22 counter name "c_ssh" log prefix "ssh-attempt " group 5
		meta nfproto ipv6 udp dport 9000 counter name "c_udp6" log prefix "udp6 in " group 5
		udp dport 9001 counter name "c_plain" log group 6
	}
}
`

// NflogRule is what one logging rule of the fixture counted: the group
// and prefix it logs with, and its own counter.
type NflogRule struct {
	Group          uint16
	Prefix         string
	Packets, Bytes uint64
}

// NflogFixture is a namespace B whose input rules log to nflog groups 5,
// 6 (nft log) and 7 (iptables and ip6tables NFLOG), fed by namespace A over
// a veth pair: A is 192.0.2.1 and 2001:db8::1, B 192.0.2.2 and 2001:db8::2.
type NflogFixture struct {
	A, B     *NS
	IfA, IfB string
}

// The fixture's iptables NFLOG prefixes.
const (
	NflogIPv4Prefix = "Input IPv4 Default DROP"
	NflogIPv6Prefix = "v6drop"
)

// NewNflogFixture makes the namespaces and loads the rules. It needs nft,
// iptables and ip6tables.
func NewNflogFixture(t testing.TB) *NflogFixture {
	t.Helper()
	f := &NflogFixture{A: New(t), B: New(t)}
	f.IfA, f.IfB = Link(t, f.A, f.B, "192.0.2.1/24", "192.0.2.2/24")
	f.A.Run(t, "ip", "-6", "addr", "add", "2001:db8::1/64", "dev", f.IfA, "nodad")
	f.B.Run(t, "ip", "-6", "addr", "add", "2001:db8::2/64", "dev", f.IfB, "nodad")
	NftLoad(t, f.B, NflogRuleset)
	f.B.Run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9002", "-j", "NFLOG", "--nflog-group", "7", "--nflog-prefix", NflogIPv4Prefix)
	f.B.Run(t, "ip6tables", "-A", "INPUT", "-p", "udp", "--dport", "9002", "-j", "NFLOG", "--nflog-group", "7", "--nflog-prefix", NflogIPv6Prefix)
	for _, a := range []string{"udp4:192.0.2.2:9001", "udp4:192.0.2.2:9002", "udp6:[2001:db8::2]:9000", "udp6:[2001:db8::2]:9001", "udp6:[2001:db8::2]:9002"} {
		network, addr, _ := strings.Cut(a, ":")
		f.B.ListenPacket(t, network, addr)
	}
	return f
}

// Send sends n packets of each kind from A to B: TCP connection attempts
// to port 22 (refused) over both families, UDP datagrams to ports 9000
// (IPv6), 9001 and 9002 over both families.
func (f *NflogFixture) Send(t testing.TB, n int) {
	t.Helper()
	for i := range n {
		for _, dst := range []string{"192.0.2.2:22", "[2001:db8::2]:22"} {
			_ = f.A.Do(func() error {
				c, err := dialTCP(dst)
				if err == nil {
					c.Close()
				}
				return nil
			})
		}
		for _, dst := range []string{"udp4 192.0.2.2:9001", "udp4 192.0.2.2:9002", "udp6 [2001:db8::2]:9000", "udp6 [2001:db8::2]:9001", "udp6 [2001:db8::2]:9002"} {
			network, addr, _ := strings.Cut(dst, " ")
			c := f.A.Dial(t, network, addr)
			if _, err := c.Write(make([]byte, 10+i%50)); err != nil {
				t.Fatalf("sending to %s: %v", addr, err)
			}
			c.Close()
		}
	}
}

// Rules returns what each logging rule counted, read from nft's named
// counters and iptables' and ip6tables' rule counters.
func (f *NflogFixture) Rules(t testing.TB) []NflogRule {
	t.Helper()
	byName := map[string]NftCounter{}
	for _, c := range NftCounters(t, f.B) {
		byName[c.Name] = c
	}
	rules := []NflogRule{
		{Group: 5, Prefix: "ssh-attempt ", Packets: byName["c_ssh"].Packets, Bytes: byName["c_ssh"].Bytes},
		{Group: 5, Prefix: "udp6 in ", Packets: byName["c_udp6"].Packets, Bytes: byName["c_udp6"].Bytes},
		{Group: 6, Prefix: "", Packets: byName["c_plain"].Packets, Bytes: byName["c_plain"].Bytes},
	}
	for _, tool := range []struct{ cmd, prefix string }{{"iptables", NflogIPv4Prefix}, {"ip6tables", NflogIPv6Prefix}} {
		p, b := iptablesNflogCounter(t, f.B, tool.cmd)
		rules = append(rules, NflogRule{Group: 7, Prefix: tool.prefix, Packets: p, Bytes: b})
	}
	return rules
}

// iptablesNflogCounter returns the packets and bytes of the NFLOG rule of
// the INPUT chain, from `iptables -L INPUT -v -x -n`.
func iptablesNflogCounter(t testing.TB, ns *NS, cmd string) (packets, bytes uint64) {
	t.Helper()
	out := ns.Run(t, cmd, "-L", "INPUT", "-v", "-x", "-n")
	for line := range strings.SplitSeq(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) > 3 && fields[2] == "NFLOG" {
			p, err1 := strconv.ParseUint(fields[0], 10, 64)
			b, err2 := strconv.ParseUint(fields[1], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s counters: %q", cmd, line)
			}
			return p, b
		}
	}
	t.Fatalf("%s: no NFLOG rule in:\n%s", cmd, out)
	return 0, 0
}

// String returns the rule as group/prefix: packets bytes.
func (r NflogRule) String() string {
	return fmt.Sprintf("%d/%q: %d packets %d bytes", r.Group, r.Prefix, r.Packets, r.Bytes)
}

// dialTCP tries a TCP connection to addr, for a second at most.
func dialTCP(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}

// SendTCPFlags sends count bare TCP segments with the given flags (0x03:
// SYN and FIN) from src in ns to dst:dport over IPv4, through a raw socket:
// packets conntrack finds invalid.
func SendTCPFlags(t testing.TB, ns *NS, src, dst string, dport uint16, flags byte, count int) {
	t.Helper()
	c := ns.ListenPacket(t, "ip4:tcp", src)
	s, d := net.ParseIP(src).To4(), net.ParseIP(dst).To4()
	for i := range count {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], uint16(40000+i))
		binary.BigEndian.PutUint16(h[2:], dport)
		binary.BigEndian.PutUint32(h[4:], uint32(1000+i))
		h[12] = 5 << 4
		h[13] = flags
		binary.BigEndian.PutUint16(h[14:], 65535)
		binary.BigEndian.PutUint16(h[16:], tcpChecksum(s, d, h))
		if _, err := c.WriteTo(h, &net.IPAddr{IP: d}); err != nil {
			t.Fatalf("sending TCP segment %d to %s: %v", i, dst, err)
		}
	}
}

// tcpChecksum is the checksum of TCP segment seg from src to dst (IPv4).
func tcpChecksum(src, dst net.IP, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	add([]byte{0, 6, byte(len(seg) >> 8), byte(len(seg))})
	add(seg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
