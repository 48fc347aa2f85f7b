package ctnl_test

import (
	"context"
	"net/netip"
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
	for _, s := range ctnl.AccountingSettings(h.FD(), false)[:2] {
		if s.Err != nil || s.Value != 1 {
			t.Fatalf("%s = %d, %v; want 1 after sysctl -w", s.Name, s.Value, s.Err)
		}
	}
	l, err := ctnl.Listen(&ctnl.ListenConfig{NetNS: h.FD(), ReadBuffer: 8 << 20})
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

func keys(m map[string]ctnl.Flow) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
