package collector

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/nflog"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// fakeNflog delivers packets given in advance and fixed counts.
type fakeNflog struct {
	packets []nflog.Packet
	stats   nflog.Stats
	err     error
}

func (f *fakeNflog) Run(ctx context.Context, fn func([]nflog.Packet)) error {
	fn(f.packets)
	<-ctx.Done()
	return nil
}

func (f *fakeNflog) Stats() (nflog.Stats, error) { return f.stats, f.err }

var nflogPackets = func() []nflog.Packet {
	v4a, v4b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	var ps []nflog.Packet
	add := func(n int, p nflog.Packet) {
		for range n {
			ps = append(ps, p)
		}
	}
	add(3, nflog.Packet{Group: 5, Family: 2, Hook: 1, Prefix: []byte("ssh-attempt "), InDev: 2, Length: 60, Proto: 6, Src: v4a, Dst: v4b, SPort: 40000, DPort: 22})
	add(2, nflog.Packet{Group: 5, Family: 10, Hook: 1, Prefix: []byte("ssh-attempt "), InDev: 2, Length: 80, Proto: 6, Src: v6a, Dst: v6b, SPort: 40001, DPort: 22})
	add(4, nflog.Packet{Group: 6, Family: 2, Hook: 1, InDev: 2, Length: 128, Proto: 17, Src: v4a, Dst: v4b, SPort: 5000, DPort: 9001})
	add(1, nflog.Packet{Group: 7, Family: 2, Hook: 3, Prefix: []byte(" Input IPv4 Default DROP"), OutDev: 3, Length: 84, Proto: 1, Src: v4b, Dst: v4a})
	return ps
}()

var nflogStats = nflog.Stats{
	Groups:    []nflog.GroupStats{{Group: 5, Received: 5, Lost: 2}, {Group: 6, Received: 4}, {Group: 7, Received: 1}},
	Datagrams: 3, DecodeErrors: 1, Drops: 1, ReadBuffer: 1 << 21, BufferGrowths: 1,
}

func ifName(i uint32) string {
	if i == 2 {
		return "eth0"
	}
	return ""
}

func newTestNflog(t *testing.T, cfg NflogConfig) *Nflog {
	t.Helper()
	c, err := NewNflog(&fakeNflog{packets: nflogPackets, stats: nflogStats}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.count(nflogPackets)
	return c
}

func TestNflogGolden(t *testing.T) {
	c := newTestNflog(t, NflogConfig{GroupBy: []string{"family", "proto", "dport", "in", "hook"}, InterfaceName: ifName})
	p := exposition.NewGatherer(NewSet(map[string]Collector{"nflog": c}, time.Second, discard))
	checkGolden(t, p, "testdata/nflog.prom")
}

func nflogPaths(t *testing.T, c *Nflog) []string {
	t.Helper()
	var b tree.Builder
	if err := c.Update(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	for s := range b.All() {
		if s.GraphitePath() != nil && s.Desc.Name != "" && strings.HasPrefix(s.Desc.Name, "netfilter_nflog_") {
			got = append(got, strings.Join(s.GraphitePath(), "/")+"="+strconv.FormatFloat(s.Value, 'f', -1, 64))
		}
	}
	slices.Sort(got)
	return got
}

func TestNflogGraphitePaths(t *testing.T) {
	got := nflogPaths(t, newTestNflog(t, NflogConfig{GroupBy: []string{"proto", "dport"}}))
	want := []string{
		"nflog/5/ssh-attempt/tcp/22/pkts=5", "nflog/5/ssh-attempt/tcp/22/bytes=340",
		"nflog/6//udp/9001/pkts=4", "nflog/6//udp/9001/bytes=512",
		"nflog/7/Input IPv4 Default DROP/icmp/0/pkts=1", "nflog/7/Input IPv4 Default DROP/icmp/0/bytes=84",
		"exporter/nflog/listener_up=0", "exporter/nflog/series=3", "exporter/nflog/series_limit=4096",
		"exporter/nflog/overflow_packets=0", "exporter/nflog/decode_errors=1", "exporter/nflog/listener_overruns=0",
		"exporter/nflog/receive_buffer_growths=1",
		"exporter/nflog/lost/5=2", "exporter/nflog/lost/6=0", "exporter/nflog/lost/7=0",
		"exporter/nflog/socket_drops=1", "exporter/nflog/receive_buffer_bytes=2097152",
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
}

func TestNflogMaxSeriesOverflow(t *testing.T) {
	c := newTestNflog(t, NflogConfig{GroupBy: []string{"family"}, MaxSeries: 2})
	got := nflogPaths(t, c)
	want := []string{
		"nflog/5/ssh-attempt/ipv4/pkts=3", "nflog/5/ssh-attempt/ipv4/bytes=180",
		"nflog/5/ssh-attempt/ipv6/pkts=2", "nflog/5/ssh-attempt/ipv6/bytes=160",
		"nflog/6/other/other/pkts=4", "nflog/6/other/other/bytes=512",
		"nflog/7/other/other/pkts=1", "nflog/7/other/other/bytes=84",
	}
	want = append(want, "exporter/nflog/overflow_packets=5", "exporter/nflog/series=4")
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("no %s in %v", w, got)
		}
	}
	for _, g := range got {
		if strings.HasPrefix(g, "nflog/") && !slices.Contains(want, g) {
			t.Errorf("unexpected %s", g)
		}
	}
}

// testNetworks holds 192.0.2.1 and 2001:db8::1 in "a" and 192.0.2.2 in
// "b"; 2001:db8::2 is in none.
func testNetworks(t *testing.T) *flow.Networks {
	t.Helper()
	n, err := flow.NewNetworks(map[string][]netip.Prefix{
		"a": {netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::1/128")},
		"b": {netip.MustParsePrefix("192.0.2.0/24")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNflogNetworks sums packets by the networks of their addresses, the
// longest prefix winning, other for an address in none; without networks
// every address reads other.
func TestNflogNetworks(t *testing.T) {
	got := nflogPaths(t, newTestNflog(t, NflogConfig{GroupBy: []string{"src_net", "dst_net"}, Networks: testNetworks(t)}))
	want := []string{
		"nflog/5/ssh-attempt/a/b/pkts=3", "nflog/5/ssh-attempt/a/b/bytes=180",
		"nflog/5/ssh-attempt/a/other/pkts=2", "nflog/5/ssh-attempt/a/other/bytes=160",
		"nflog/6//a/b/pkts=4", "nflog/6//a/b/bytes=512",
		"nflog/7/Input IPv4 Default DROP/b/a/pkts=1", "nflog/7/Input IPv4 Default DROP/b/a/bytes=84",
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("no %s in %v", w, got)
		}
	}
	got = nflogPaths(t, newTestNflog(t, NflogConfig{GroupBy: []string{"dst_net"}}))
	for _, w := range []string{"nflog/5/ssh-attempt/other/pkts=5", "nflog/6//other/pkts=4", "exporter/nflog/series=3"} {
		if !slices.Contains(got, w) {
			t.Errorf("without networks: no %s in %v", w, got)
		}
	}
}

func TestNflogCountsWithoutAllocating(t *testing.T) {
	c := newTestNflog(t, NflogConfig{GroupBy: []string{"family", "proto", "sport", "dport", "src", "dst", "src_net", "dst_net", "in", "out", "hook", "mark"},
		Networks: testNetworks(t)})
	if n := testing.AllocsPerRun(100, func() { c.count(nflogPackets) }); n != 0 {
		t.Errorf("counting known series allocates %v times per batch", n)
	}
}

func TestNflogListenAndFailure(t *testing.T) {
	src := &fakeNflog{packets: nflogPackets, stats: nflogStats}
	c, err := NewNflog(src, NflogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Listen(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !c.up.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen after cancel: %v", err)
	}
	src.err = errors.New("socket gone")
	var b tree.Builder
	if err := c.Update(context.Background(), &b); !errors.Is(err, src.err) {
		t.Errorf("Update: error %v, want %v", err, src.err)
	}
}

func TestParseNflogGroupBy(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "", want: nil},
		{in: "family, proto,dport", want: []string{"family", "proto", "dport"}},
		{in: "prefix", err: true},
		{in: "dport,dport", err: true},
		{in: "src_net,dst_net,in", want: []string{"src_net", "dst_net", "in"}},
		{in: "src_net,zone", err: true},
	} {
		got, err := ParseNflogGroupBy(tt.in)
		if (err != nil) != tt.err || !errors.Is(err, errNflogKey) && tt.err {
			t.Errorf("%q: error %v", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestNflogConntrackInvalidGolden(t *testing.T) {
	v4a, v4b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	ps := []nflog.Packet{
		{Group: 0, Family: 2, Prefix: []byte("nf_ct_proto_6: invalid tcp flag combination "), InDev: 2, Length: 40, Proto: 6, Src: v4a, Dst: v4b},
		{Group: 0, Family: 2, Prefix: []byte("nf_ct_proto_6: invalid tcp flag combination "), InDev: 2, Length: 40, Proto: 6, Src: v4a, Dst: v4b},
		{Group: 0, Family: 2, Prefix: []byte("nf_ct_proto_6: invalid new "), OutDev: 2, Length: 40, Proto: 6, Src: v4b, Dst: v4a},
		{Group: 0, Family: 2, Prefix: []byte("nf_ct_proto_6: SEQ is over upper bound 1027999487 (over the window of the receiver) "), InDev: 2, Length: 52, Proto: 6},
		{Group: 0, Family: 2, Prefix: []byte("nf_ct_proto_6: SEQ is over upper bound 1027999999 (over the window of the receiver) "), InDev: 2, Length: 52, Proto: 6},
		// A log group 0 rule of the ruleset's own is an nflog series.
		{Group: 0, Family: 2, Prefix: []byte("group zero "), InDev: 2, Length: 60, Proto: 17},
	}
	src := &fakeNflog{stats: nflog.Stats{Groups: []nflog.GroupStats{{Group: 0, Received: 6}}}}
	c, err := NewNflog(src, NflogConfig{ConntrackInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	c.count(ps)
	p := exposition.NewGatherer(NewSet(map[string]Collector{"nflog": c}, time.Second, discard))
	checkGolden(t, p, "testdata/nflog_invalid.prom")
	var b tree.Builder
	if err := c.Update(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for s := range b.All() {
		if s.Desc.Name == "netfilter_conntrack_invalid_packets_total" {
			paths = append(paths, strings.Join(s.GraphitePath(), "/")+"="+strconv.FormatFloat(s.Value, 'f', -1, 64))
		}
	}
	want := []string{
		"conntrack/invalid/ipv4/tcp/invalid tcp flag combination/in=2",
		"conntrack/invalid/ipv4/tcp/invalid new/out=1",
		"conntrack/invalid/ipv4/tcp/SEQ is over upper bound N (over the window of the receiver)/in=2",
	}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	if n := testing.AllocsPerRun(100, func() { c.count(ps[:5]) }); n != 0 {
		t.Errorf("counting known invalid reasons allocates %v times per batch", n)
	}
}

func TestNflogConntrackInvalidReasonsAreCapped(t *testing.T) {
	c, err := NewNflog(&fakeNflog{}, NflogConfig{ConntrackInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxInvalidReasons + 10 {
		c.count([]nflog.Packet{{Family: 2, Proto: 6, Prefix: []byte("nf_ct_proto_6: reason " + strings.Repeat("x", i))}})
	}
	if len(c.reasons) != maxInvalidReasons || *c.invalid[invalidKey{family: 2, proto: 6, reason: "other"}] != 10 {
		t.Errorf("%d reasons, other %v", len(c.reasons), c.invalid[invalidKey{family: 2, proto: 6, reason: "other"}])
	}
}

// BenchmarkNflogCount counts batches of 256 packets of one rule, with the
// default keys and with family,proto,dport.
func BenchmarkNflogCount(b *testing.B) {
	ps := make([]nflog.Packet, 256)
	for i := range ps {
		ps[i] = nflogPackets[0]
	}
	for _, keys := range [][]string{nil, {"family", "proto", "dport"}} {
		b.Run(strings.Join(keys, ",")+"_", func(b *testing.B) {
			c, err := NewNflog(&fakeNflog{}, NflogConfig{GroupBy: keys})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.count(ps)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ps)), "ns/packet")
		})
	}
}
