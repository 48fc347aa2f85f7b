package ctnl_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// dumpAll dumps the table of h into a map keyed like netnstest.CTEntry.Key.
func dumpAll(t *testing.T, d *ctnl.Dumper, filter ctnl.DumpFilter) (map[string]ctnl.Flow, ctnl.DumpStats) {
	t.Helper()
	got := make(map[string]ctnl.Flow)
	st, err := d.Dump(context.Background(), filter, func(fs []ctnl.Flow) error {
		for _, f := range fs {
			got[flowKey(f)] = f
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return got, st
}

func TestKernelDumpMatchesConntrackList(t *testing.T) {
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

	// A TCP connection left open, so that its entry is ESTABLISHED.
	l := b.Listen(t, "tcp4", "192.0.2.2:8080")
	c := a.Dial(t, "tcp4", "192.0.2.2:8080")
	defer c.Close()
	srv, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Read(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	netnstest.UDPExchange(t, a, b, "udp6", "[2001:db8::2]:9001", 3, 200)
	netnstest.ICMPEcho(t, a, "192.0.2.2", 2)

	want := make(map[string]netnstest.CTEntry)
	for _, e := range netnstest.SettledConntrackList(t, b) {
		want[e.Key()] = e
	}
	// A small read buffer: the kernel then sends one entry or a few per
	// read, and the dump must still put them together.
	d, err := ctnl.DialDumper(&ctnl.DumpConfig{NetNS: h.FD(), ReadSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, st := dumpAll(t, d, ctnl.DumpFilter{})
	if len(got) != len(want) || st.Entries != len(want) {
		t.Fatalf("dump has %d entries (stats %d), conntrack -L %d:\n%v\n%v", len(got), st.Entries, len(want), got, want)
	}
	for k, w := range want {
		f, ok := got[k]
		if !ok {
			t.Errorf("dump lacks %s", k)
			continue
		}
		if f.OrigPackets != w.OrigPackets || f.OrigBytes != w.OrigBytes || f.ReplyPackets != w.ReplyPackets || f.ReplyBytes != w.ReplyBytes {
			t.Errorf("%s: dump counters %d/%d %d/%d, conntrack -L %d/%d %d/%d", k,
				f.OrigPackets, f.OrigBytes, f.ReplyPackets, f.ReplyBytes, w.OrigPackets, w.OrigBytes, w.ReplyPackets, w.ReplyBytes)
		}
		if f.Start == 0 || f.ID == 0 {
			t.Errorf("%s: start %d, id %d; want both set", k, f.Start, f.ID)
		}
		if f.Orig.Proto == 6 && f.TCPState != 3 {
			t.Errorf("%s: TCP state %d, want 3 (ESTABLISHED)", k, f.TCPState)
		}
	}
	if st.Bytes == 0 || st.Duration <= 0 {
		t.Errorf("stats %+v: want bytes and duration", st)
	}

	// Every entry can be looked up by its tuple; the answer is the same
	// entry.
	for k, f := range got {
		e, found, err := d.Lookup(context.Background(), &f)
		if err != nil || !found {
			t.Errorf("Lookup(%s) = found %v, %v", k, found, err)
			continue
		}
		if e.ID != f.ID || e.Start != f.Start {
			t.Errorf("Lookup(%s) = id %d start %d, want %d %d", k, e.ID, e.Start, f.ID, f.Start)
		}
	}
	// A tuple the table does not hold.
	gone := ctnl.Flow{Family: 4, Orig: ctnl.Tuple{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: 6, SPort: 1, DPort: 2}}
	if _, found, err := d.Lookup(context.Background(), &gone); err != nil || found {
		t.Errorf("Lookup(absent) = found %v, %v; want not found, no error", found, err)
	}

	// The kernel filters by family.
	v6, st := dumpAll(t, d, ctnl.DumpFilter{Family: 6})
	if len(v6) != 1 || !st.Filtered {
		t.Errorf("IPv6 dump has %d entries (filtered %v), want the UDP one: %v", len(v6), st.Filtered, v6)
	}
	for _, f := range v6 {
		if f.Family != 6 {
			t.Errorf("IPv6 dump holds %+v", f)
		}
	}
}

func TestKernelDumpMarkFilter(t *testing.T) {
	netnstest.Require(t, "conntrack")
	ns := netnstest.New(t)
	if err := ctload.Create(ns.FD(), 100); err != nil {
		t.Fatal(err)
	}
	// Mark some of them 0x12 (mask tested with value bits outside it).
	// conntrack -U may stop half-way with "Protocol error" on a busy
	// host; the marks it set are what the dump below finds.
	_, _ = ns.Try("conntrack", "-U", "-p", "udp", "--dport", "53", "-s", "198.18.0.0", "-m", "0x12")
	h, err := netns.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d, err := ctnl.DialDumper(&ctnl.DumpConfig{NetNS: h.FD(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	all, _ := dumpAll(t, d, ctnl.DumpFilter{})
	marked := 0
	for _, f := range all {
		if f.Mark == 0x12 {
			marked++
		}
	}
	if len(all) != 100 || marked == 0 {
		t.Fatalf("dump: %d entries, %d marked; want 100 and some marked", len(all), marked)
	}
	for _, tc := range []struct {
		name   string
		filter ctnl.DumpFilter
		want   int
	}{
		{"exact", ctnl.DumpFilter{HasMark: true, Mark: 0x12}, marked},
		{"masked", ctnl.DumpFilter{HasMark: true, Mark: 0xf2, MarkMask: 0x0f}, marked},
		{"none", ctnl.DumpFilter{HasMark: true, Mark: 0x13}, 0},
		{"unmarked", ctnl.DumpFilter{HasMark: true, Mark: 0}, 100 - marked},
	} {
		got, st := dumpAll(t, d, tc.filter)
		if len(got) != tc.want || st.Entries != tc.want {
			t.Errorf("%s: %d entries, want %d", tc.name, len(got), tc.want)
		}
	}
}
