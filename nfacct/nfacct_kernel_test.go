package nfacct_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
)

func TestKernelListCreateDelete(t *testing.T) {
	netnstest.Require(t, "iptables", "nfacct")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	ctx := context.Background()

	c, err := nfacct.Dial(&nfacct.Config{NetNS: b.FD(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, o := range []nfacct.Object{
		{Name: "udp-9000"},
		{Name: "ipv4.dns"},
		{Name: "quota-pkts", Flags: nfacct.FlagQuotaPackets, Quota: 3},
		{Name: "quota-bytes", Flags: nfacct.FlagQuotaBytes, Quota: 1 << 20},
		{Name: "unused"},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, nfacct.Object{Name: "udp-9000"}); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("creating a duplicate: error = %v, want EEXIST", err)
	}

	for _, rule := range [][]string{
		{"-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", "udp-9000"},
		{"-A", "INPUT", "-p", "udp", "--dport", "53", "-m", "nfacct", "--nfacct-name", "ipv4.dns"},
		{"-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", "quota-pkts"},
		{"-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", "quota-bytes"},
	} {
		b.Run(t, "iptables", rule...)
	}
	b.ListenPacket(t, "udp4", "192.0.2.2:9000")
	b.ListenPacket(t, "udp4", "192.0.2.2:53")
	netnstest.SendUDP(t, a, "192.0.2.2:9000", 7, 100)
	netnstest.SendUDP(t, a, "192.0.2.2:53", 2, 30)

	// The counters move as the packets are received; wait for all of them.
	var objs []nfacct.Object
	deadline := time.Now().Add(5 * time.Second)
	for {
		if objs, err = c.List(ctx); err != nil {
			t.Fatal(err)
		}
		byName := index(objs)
		if byName["udp-9000"].Packets == 7 && byName["ipv4.dns"].Packets == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := index(objs)
	if len(got) != 5 {
		t.Fatalf("List returned %d objects, want 5: %+v", len(got), objs)
	}
	// IPv4 header 20 + UDP header 8 + payload. Use counts the object's own
	// reference plus one per rule.
	want := map[string]nfacct.Object{
		"udp-9000":    {Name: "udp-9000", Packets: 7, Bytes: 7 * 128, Use: 2},
		"ipv4.dns":    {Name: "ipv4.dns", Packets: 2, Bytes: 2 * 58, Use: 2},
		"quota-pkts":  {Name: "quota-pkts", Packets: 7, Bytes: 7 * 128, Use: 2, Flags: nfacct.FlagQuotaPackets | nfacct.FlagOverQuota, Quota: 3},
		"quota-bytes": {Name: "quota-bytes", Packets: 7, Bytes: 7 * 128, Use: 2, Flags: nfacct.FlagQuotaBytes, Quota: 1 << 20},
		"unused":      {Name: "unused", Use: 1},
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("object %q = %+v, want %+v", n, got[n], w)
		}
	}

	// The independent reader agrees, so reading did not zero anything.
	ref := netnstest.NfacctList(t, b)
	for n, w := range want {
		if ref[n] != [2]uint64{w.Packets, w.Bytes} {
			t.Errorf("nfacct list shows %q = %v after our reads, want %d packets %d bytes", n, ref[n], w.Packets, w.Bytes)
		}
	}

	// An object used by a rule cannot go; an unused one can; a missing one
	// reports ENOENT.
	if err := c.Delete(ctx, "udp-9000"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("deleting an object in use: error = %v, want EBUSY", err)
	}
	if err := c.Delete(ctx, "unused"); err != nil {
		t.Errorf("deleting an unused object: %v", err)
	}
	if err := c.Delete(ctx, "unused"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("deleting a missing object: error = %v, want ENOENT", err)
	}
	if err := c.Delete(ctx, ""); err == nil {
		t.Error("Delete with an empty name succeeded; it would delete every unused object")
	}
}

func TestKernelOverQuotaNotification(t *testing.T) {
	netnstest.Require(t, "iptables")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := nfacct.Dial(&nfacct.Config{NetNS: b.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := nfacct.ListenOverQuota(&nfacct.Config{NetNS: b.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	if err := c.Create(ctx, nfacct.Object{Name: "q", Flags: nfacct.FlagQuotaPackets, Quota: 2}); err != nil {
		t.Fatal(err)
	}
	b.Run(t, "iptables", "-A", "INPUT", "-p", "udp", "-m", "nfacct", "--nfacct-name", "q")
	b.ListenPacket(t, "udp4", "192.0.2.2:9000")
	netnstest.SendUDP(t, a, "192.0.2.2:9000", 5, 10)

	objs, err := l.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Name != "q" || !objs[0].OverQuota() {
		t.Fatalf("notification = %+v, want object q over quota", objs)
	}
}

func TestKernelListDeadline(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t)
	c, err := nfacct.Dial(&nfacct.Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.List(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a cancelled context: error = %v, want context.Canceled", err)
	}
	objs, err := c.List(context.Background())
	if err != nil || len(objs) != 0 {
		t.Fatalf("List in an empty namespace = %v, %v; want no objects", objs, err)
	}
}

func index(objs []nfacct.Object) map[string]nfacct.Object {
	m := make(map[string]nfacct.Object, len(objs))
	for _, o := range objs {
		m[o.Name] = o
	}
	return m
}

// BenchmarkKernelList measures one dump of n objects from the kernel.
func BenchmarkKernelList(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			netnstest.Require(b)
			ns := netnstest.New(b)
			c, err := nfacct.Dial(&nfacct.Config{NetNS: ns.FD()})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for i := 0; i < n; i++ {
				if err := c.Create(context.Background(), nfacct.Object{Name: fmt.Sprintf("ipv4.svc%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				objs, err := c.List(context.Background())
				if err != nil || len(objs) != n {
					b.Fatalf("List = %d objects, %v; want %d", len(objs), err, n)
				}
			}
		})
	}
}
