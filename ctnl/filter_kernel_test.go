package ctnl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
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

// TestKernelListenerEventFilter runs a Listener with a filter: it delivers
// the events of the entries the rules accept, and the kernel never queues
// the others.
func TestKernelListenerEventFilter(t *testing.T) {
	netnstest.Require(t, "conntrack", "sysctl")
	ns := netnstest.New(t)
	ns.Run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_events=1")
	h, err := netns.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := CompileEventFilter(nil, []FilterRule{{Src: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(&ListenConfig{NetNS: h.FD(), ReadBuffer: 4 << 20, Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []string
	go func() {
		_ = l.Run(ctx, func(fs []Flow) {
			mu.Lock()
			defer mu.Unlock()
			for i := range fs {
				got = append(got, fs[i].Orig.Src.String())
			}
		})
	}()
	for i := range 20 {
		src := fmt.Sprintf("10.9.0.%d", i+1) // denied
		if i%2 == 1 {
			src = fmt.Sprintf("10.8.0.%d", i+1) // counted
		}
		ns.Run(t, "conntrack", "-I", "-t", "120", "-s", src, "-d", "10.0.0.1", "-p", "udp", "--sport", "1000", "--dport", "53")
	}
	ns.Run(t, "conntrack", "-F")
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything more would be a filter's failure
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	if len(got) != 10 || !slices.ContainsFunc(got, func(s string) bool { return s == "10.8.0.2" }) || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "10.9.") }) {
		t.Errorf("the listener delivered %q, want the 10 flows from 10.8.0.0/24 and none from the denied 10.9.0.0/16", got)
	}
	st, err := l.Stats()
	if err != nil || st.Events != 10 || st.Lost != 0 {
		t.Errorf("listener stats %+v, %v: want 10 events counted, none lost", st, err)
	}
}

// TestKernelListenerSetFilter replaces the program of a listening socket
// and removes it, as a reload does: each phase's events are judged by the
// filter set then, and none is lost.
func TestKernelListenerSetFilter(t *testing.T) {
	netnstest.Require(t, "conntrack", "sysctl")
	ns := netnstest.New(t)
	ns.Run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_events=1")
	h, err := netns.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	deny := func(prefix string) *EventFilter {
		f, err := CompileEventFilter(nil, []FilterRule{{Src: []netip.Prefix{netip.MustParsePrefix(prefix)}}})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	l, err := Listen(&ListenConfig{NetNS: h.FD(), ReadBuffer: 4 << 20, Filter: deny("10.9.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []string
	go func() {
		_ = l.Run(ctx, func(fs []Flow) {
			mu.Lock()
			defer mu.Unlock()
			for i := range fs {
				got = append(got, fs[i].Orig.Src.String())
			}
		})
	}()
	// phase ends one flow from 10.8.0.n and one from 10.9.0.n and returns
	// the sources delivered, once want of them have come.
	phase := func(n, want int) []string {
		mu.Lock()
		got = nil
		mu.Unlock()
		for _, src := range []string{fmt.Sprintf("10.8.0.%d", n), fmt.Sprintf("10.9.0.%d", n)} {
			ns.Run(t, "conntrack", "-I", "-t", "120", "-s", src, "-d", "10.0.0.1", "-p", "udp", "--sport", "1000", "--dport", "53")
		}
		ns.Run(t, "conntrack", "-F")
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			k := len(got)
			mu.Unlock()
			if k >= want || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // anything more would be a filter's failure
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(got)
		slices.Sort(out)
		return out
	}
	if out := phase(1, 1); !slices.Equal(out, []string{"10.8.0.1"}) {
		t.Errorf("with 10.9.0.0/16 denied, the listener delivered %q, want only 10.8.0.1", out)
	}
	if err := l.SetFilter(deny("10.8.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if out := phase(2, 1); !slices.Equal(out, []string{"10.9.0.2"}) {
		t.Errorf("once the filter denies 10.8.0.0/16 instead, the listener delivered %q, want only 10.9.0.2", out)
	}
	if err := l.SetFilter(nil); err != nil {
		t.Fatal(err)
	}
	if out := phase(3, 2); !slices.Equal(out, []string{"10.8.0.3", "10.9.0.3"}) {
		t.Errorf("without a filter, the listener delivered %q, want 10.8.0.3 and 10.9.0.3", out)
	}
	if err := l.SetFilter(nil); err != nil {
		t.Errorf("removing a filter twice: %v, want no error", err)
	}
	cancel()
	l.Close()
	if err := l.SetFilter(deny("10.9.0.0/16")); !errors.Is(err, errListenerClosed) {
		t.Errorf("SetFilter after Close = %v, want %v", err, errListenerClosed)
	}
}
