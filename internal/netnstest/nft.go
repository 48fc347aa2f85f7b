package netnstest

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// NftCounter is a named counter as `nft -j list counters` shows it.
type NftCounter struct {
	Family, Table, Name string
	Packets, Bytes      uint64
}

// NftQuota is a named quota as `nft -j list quotas` shows it.
type NftQuota struct {
	Family, Table, Name string
	// Limit is the quota in bytes ("bytes"), Used what it consumed
	// ("used"), Over whether it is a `quota over` ("inv").
	Limit, Used uint64
	Over        bool
}

// NftRuleCounter is a rule with an anonymous counter statement, as
// `nft -j list ruleset` shows it.
type NftRuleCounter struct {
	Family, Table, Chain string
	Handle               uint64
	Comment              string
	Packets, Bytes       uint64
}

// nftList runs `nft -j list <what>` in ns and returns the objects of its
// "nftables" array, each a map from its kind ("counter", "rule", ...) to its
// fields.
func nftList(t testing.TB, ns *NS, what ...string) []map[string]json.RawMessage {
	t.Helper()
	out := ns.Run(t, "nft", append([]string{"-j", "list"}, what...)...)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parsing nft -j list %s: %v\n%s", strings.Join(what, " "), err, out)
	}
	return doc.Nftables
}

// NftCounters runs `nft -j list counters` in ns: the independent reference
// reader of named counters.
func NftCounters(t testing.TB, ns *NS) []NftCounter {
	t.Helper()
	var cs []NftCounter
	for _, o := range nftList(t, ns, "counters") {
		raw, ok := o["counter"]
		if !ok {
			continue
		}
		var c struct {
			Family, Table, Name string
			Packets, Bytes      uint64
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("parsing a counter of nft -j list counters: %v: %s", err, raw)
		}
		cs = append(cs, NftCounter(c))
	}
	return cs
}

// NftQuotas runs `nft -j list quotas` in ns: the independent reference
// reader of named quotas.
func NftQuotas(t testing.TB, ns *NS) []NftQuota {
	t.Helper()
	var qs []NftQuota
	for _, o := range nftList(t, ns, "quotas") {
		raw, ok := o["quota"]
		if !ok {
			continue
		}
		var q struct {
			Family, Table, Name string
			Bytes, Used         uint64
			Inv                 bool
		}
		if err := json.Unmarshal(raw, &q); err != nil {
			t.Fatalf("parsing a quota of nft -j list quotas: %v: %s", err, raw)
		}
		qs = append(qs, NftQuota{Family: q.Family, Table: q.Table, Name: q.Name, Limit: q.Bytes, Used: q.Used, Over: q.Inv})
	}
	return qs
}

// NftRuleCounters runs `nft -j list ruleset` in ns and returns the rules
// that carry an anonymous counter, with the counts of the first one.
func NftRuleCounters(t testing.TB, ns *NS) []NftRuleCounter {
	t.Helper()
	var rs []NftRuleCounter
	for _, o := range nftList(t, ns, "ruleset") {
		raw, ok := o["rule"]
		if !ok {
			continue
		}
		var r struct {
			Family, Table, Chain string
			Handle               uint64
			Comment              string
			Expr                 []map[string]json.RawMessage
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("parsing a rule of nft -j list ruleset: %v: %s", err, raw)
		}
		for _, e := range r.Expr {
			var c struct{ Packets, Bytes uint64 }
			// A named counter reference is a string, not an object.
			if raw, ok := e["counter"]; ok && json.Unmarshal(raw, &c) == nil {
				rs = append(rs, NftRuleCounter{Family: r.Family, Table: r.Table, Chain: r.Chain, Handle: r.Handle,
					Comment: r.Comment, Packets: c.Packets, Bytes: c.Bytes})
				break
			}
		}
	}
	return rs
}

// NftLoad loads an nft script into ns with `nft -f`.
func NftLoad(t testing.TB, ns *NS, script string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "ruleset-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(script); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ns.Run(t, "nft", "-f", f.Name())
}

// NftFixture is a namespace B with nf_tables named counters and quotas in
// tables of every family that counts traffic, fed by real traffic from
// namespace A over a veth pair whose end in B is a port of bridge br0.
type NftFixture struct {
	A, B *NS
	// Port is the veth end in B, the device of the netdev table's chain.
	Port string
	// UDP4 and UDP6 are the exact counts of the IPv4 and IPv6 UDP
	// datagrams A sent to B's port 9000: 6 datagrams of 100 bytes of
	// payload each, with their IP and UDP headers.
	UDP4, UDP6 NftCounter
}

// NftFixtureRuleset is the ruleset of NewNftFixture; %[1]s is the port.
// Names with dots and slashes need escaping in Graphite paths.
const NftFixtureRuleset = `
table inet filter {
	counter web { }
	counter dns.v4 { }
	counter dns/v6 { }
	quota small { until 500 bytes }
	quota big { over 10 mbytes }
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 8080 counter name web quota name big
		meta nfproto ipv4 udp dport 9000 counter name "dns.v4" quota name small
		meta nfproto ipv6 udp dport 9000 counter name "dns/v6"
		tcp dport 8080 counter comment "web in"
		udp dport 9000 counter comment "udp in"
		counter
	}
}
table ip v4 {
	counter svc9000 { }
	chain input {
		type filter hook input priority 0;
		udp dport 9000 counter name svc9000
	}
}
table ip6 v6 {
	counter svc9000 { }
	chain input {
		type filter hook input priority 0;
		udp dport 9000 counter name svc9000
	}
}
table bridge br {
	counter frames { }
	chain input {
		type filter hook input priority 0;
		counter name frames
	}
}
table netdev nd {
	counter ingress { }
	chain ingress {
		type filter hook ingress device "%[1]s" priority 0;
		counter name ingress
	}
}
table arp a {
	counter requests { }
	chain input {
		type filter hook input priority 0;
		arp operation request counter name requests
	}
}
`

// NewNftFixture makes the namespaces, loads NftFixtureRuleset into B and
// sends TCP and UDP traffic over IPv4 and IPv6 from A to B. The interfaces
// send no router solicitations and skip duplicate address detection, so
// that the counters that see every frame stay still once the traffic is
// over. It needs the sysctl tool.
func NewNftFixture(t testing.TB) *NftFixture {
	t.Helper()
	f := &NftFixture{A: New(t), B: New(t)}
	for _, ns := range []*NS{f.A, f.B} {
		ns.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.default.router_solicitations=0",
			"net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.accept_dad=0")
	}
	ifA, port := Link(t, f.A, f.B, "192.0.2.1/24", "")
	f.Port = port
	f.A.Run(t, "ip", "-6", "addr", "add", "2001:db8::1/64", "dev", ifA, "nodad")
	f.B.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	f.B.Run(t, "ip", "link", "set", f.Port, "master", "br0")
	f.B.Run(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "br0")
	f.B.Run(t, "ip", "-6", "addr", "add", "2001:db8::2/64", "dev", "br0", "nodad")
	f.B.Run(t, "ip", "link", "set", "br0", "up")
	NftLoad(t, f.B, fmt.Sprintf(NftFixtureRuleset, f.Port))

	UDPExchange(t, f.A, f.B, "udp4", "192.0.2.2:9000", 6, 100)
	UDPExchange(t, f.A, f.B, "udp6", "[2001:db8::2]:9000", 6, 100)
	TCPExchange(t, f.A, f.B, "tcp4", "192.0.2.2:8080", 5000)
	TCPExchange(t, f.A, f.B, "tcp6", "[2001:db8::2]:8080", 5000)
	f.UDP4 = NftCounter{Packets: 6, Bytes: 6 * (20 + 8 + 100)}
	f.UDP6 = NftCounter{Packets: 6, Bytes: 6 * (40 + 8 + 100)}
	return f
}
