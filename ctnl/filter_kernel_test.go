package ctnl

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// destroySocket joins the DESTROY event group of the namespace at fd,
// with prog attached when it is not nil.
func destroySocket(t *testing.T, fd int, f *EventFilter) *netlink.Conn {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if f != nil {
		if err := c.SetBPF(f.Program); err != nil {
			t.Fatalf("attaching the program: %v", err)
		}
	}
	if err := c.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	if err := c.JoinGroup(groupCTDestroy); err != nil {
		t.Fatal(err)
	}
	return c
}

// receiveAll returns the datagrams of c until none comes for quiet.
func receiveAll(t *testing.T, c *netlink.Conn, quiet time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		if err := c.SetReadDeadline(time.Now().Add(quiet)); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Receive()
		if err != nil {
			if os.IsTimeout(err) {
				return out
			}
			t.Fatal(err)
		}
		for _, m := range msgs {
			out = append(out, marshalMessage(t, m))
		}
	}
}

func marshalMessage(t *testing.T, m netlink.Message) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKernelEventFilter attaches compiled programs to real event sockets
// and ends real entries: the kernel keeps exactly the events the program
// keeps when run here (so the tests that run it here hold for the
// kernel), and never one fewer than the userspace filter counts.
func TestKernelEventFilter(t *testing.T) {
	netnstest.Require(t, "conntrack", "sysctl")
	ns := netnstest.New(t)
	ns.Run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_events=1")
	h, err := netns.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	entries := [][]string{
		{"-s", "192.168.1.10", "-d", "192.168.1.1", "-p", "udp", "--sport", "33000", "--dport", "53"},
		{"-s", "192.169.0.1", "-d", "10.20.0.1", "-p", "udp", "--sport", "1", "--dport", "8081"},
		{"-s", "10.20.3.4", "-d", "8.8.8.8", "-p", "udp", "--sport", "5000", "--dport", "53", "--mark", "18"},
		{"-s", "192.168.1.1", "-d", "192.168.2.2", "-p", "udp", "--sport", "1", "--dport", "2", "--zone", "5"},
		{"-s", "fd00::1", "-d", "2001:db8:1::9", "-p", "tcp", "--sport", "40000", "--dport", "443", "--state", "ESTABLISHED"},
		{"-s", "192.168.9.9", "-d", "1.1.1.1", "-p", "icmp", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "7"},
		{"-s", "2001:db8::5", "-d", "fd00::7", "-p", "udp", "--sport", "7000", "--dport", "8000"},
	}
	for _, set := range filterSets {
		t.Run(set.name, func(t *testing.T) {
			f, err := CompileEventFilter(set.accept, set.deny)
			if err != nil {
				t.Fatal(err)
			}
			all := destroySocket(t, h.FD(), nil)
			filtered := destroySocket(t, h.FD(), f)
			for _, e := range entries {
				ns.Run(t, "conntrack", append([]string{"-I", "-t", "120"}, e...)...)
			}
			ns.Run(t, "conntrack", "-F")
			ref := receiveAll(t, all, time.Second)
			got := receiveAll(t, filtered, 200*time.Millisecond)
			if len(ref) != len(entries) {
				t.Fatalf("the unfiltered socket got %d DESTROY events for %d entries", len(ref), len(entries))
			}
			var want [][]byte
			for _, m := range ref {
				var fl Flow
				if err := decodeFlow(m[16:], &fl); err != nil {
					t.Fatalf("a kernel event does not decode: %v", err)
				}
				kept := runFilter(t, f.Program, m) != 0
				if kept {
					want = append(want, m)
				}
				if !kept && matchRules(set.accept, set.deny, &fl) {
					t.Errorf("%s: the program drops an event userspace counts", describe(&fl))
				}
			}
			if !slices.EqualFunc(got, want, func(a, b []byte) bool { return slices.Equal(a[16:], b[16:]) }) {
				t.Errorf("the kernel kept %d events where the program run here keeps %d", len(got), len(want))
			}
		})
	}
}

func describe(f *Flow) string {
	return fmt.Sprintf("%d %v:%d -> %v:%d mark %#x zone %d", f.Orig.Proto, f.Orig.Src, f.Orig.SPort, f.Orig.Dst, f.Orig.DPort, f.Mark, f.Zone)
}
