package ctload

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestCreateTraffic makes flows by traffic in a fresh namespace and reads
// them back with conntrack -L: one entry a packet, from the sources and
// ports documented, with the counters of one packet of the documented
// size; SendTraffic adds one packet to each, and makes no entry.
func TestCreateTraffic(t *testing.T) {
	netnstest.Require(t, "ip", "nft", "conntrack", "sysctl")
	ns := netnstest.New(t)
	ns.Run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1", "net.netfilter.nf_conntrack_udp_timeout=600")
	const n, sources = 300, 7
	if err := CreateTraffic(ns.Name, ns.FD(), n, sources); err != nil {
		t.Fatal(err)
	}
	check := func(packets uint64) {
		t.Helper()
		entries := netnstest.ConntrackList(t, ns)
		if len(entries) != n {
			t.Fatalf("%d entries after %d packets, want %d", len(entries), n, n)
		}
		seen := map[string]bool{}
		for _, e := range entries {
			seen[e.Key()] = true
		}
		for i := range n {
			e := fmt.Sprintf("udp 198.18.0.%d 198.19.0.1 %d 53", i%sources, 1024+i/sources)
			if !seen[e] {
				t.Fatalf("no entry %q for packet %d", e, i)
			}
		}
		for _, e := range entries {
			sport, _ := strconv.Atoi(e.Orig[2])
			src := e.Orig[0][len("198.18.0."):]
			s, _ := strconv.Atoi(src)
			i := (sport-1024)*sources + s
			size := uint64(20 + 8 + 1 + i%64)
			if e.OrigPackets != packets || e.OrigBytes != packets*size || e.ReplyPackets != 0 {
				t.Fatalf("entry %s: %d packets, %d bytes, %d in reply; want %d of %d bytes each, none in reply", e.Key(), e.OrigPackets, e.OrigBytes, e.ReplyPackets, packets, size)
			}
		}
	}
	check(1)
	if err := SendTraffic(ns.FD(), n, sources); err != nil {
		t.Fatal(err)
	}
	check(2)
}

// TestCreateTrafficRefuses checks the numbers CreateTraffic refuses before
// it touches the namespace.
func TestCreateTrafficRefuses(t *testing.T) {
	for _, tc := range []struct{ n, sources int }{
		{10, 0},
		{10, MaxTrafficSources + 1},
		{64001, 1},
	} {
		if err := CreateTraffic("no-such-namespace", 0, tc.n, tc.sources); err == nil {
			t.Errorf("CreateTraffic(%d flows, %d sources) = nil, want an error", tc.n, tc.sources)
		}
	}
}
