package nftables

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestKernelCutShortDumpRedials lets the deadline of a reading of 10,000
// counters pass after its first object, which leaves the kernel's dump
// running on the socket.
// The kernel would refuse the next dump on that socket (EBUSY, checked
// here); the Conn must drop it, and the next reading must be whole.
func TestKernelCutShortDumpRedials(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := netnstest.New(t)
	var b strings.Builder
	b.WriteString("table inet many {\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "\tcounter svc%d { }\n", i)
	}
	b.WriteString("}\n")
	netnstest.NftLoad(t, ns, b.String())

	// What a socket left with a running dump answers.
	raw, err := Dial(&Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysNftables<<8 | msgGetObj), Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	var busy error
	err = raw.sock.Do(context.Background(), func(s *socket) error {
		if _, err := s.Send(req); err != nil {
			return err
		}
		_, busy = raw.dumpOnce(s, msgGetObj, msgNewObj, func(Family, []byte) error { return nil })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(busy, syscall.EBUSY) {
		t.Fatalf("a dump while another runs on the socket: error = %v, want EBUSY", busy)
	}

	c, err := Dial(&Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// current is the socket the Conn uses now.
	current := func() *socket {
		var cur *socket
		if err := c.sock.Do(context.Background(), func(s *socket) error { cur = s; return nil }); err != nil {
			t.Fatal(err)
		}
		return cur
	}
	first := current()
	n := 0
	err = c.dump(context.Background(), msgGetObj, msgNewObj, func() {}, func(Family, []byte) error {
		if n++; n == 1 {
			// What the deadline does when it passes.
			return first.SetDeadline(time.Unix(1, 0))
		}
		return nil
	})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a dump whose deadline passed after %d objects: error = %v, want os.ErrDeadlineExceeded", n, err)
	}
	if current() == first {
		t.Fatal("the socket of a cut-short dump was kept")
	}
	objs, err := c.Objects(context.Background())
	if err != nil || len(objs.Counters) != 10000 {
		t.Fatalf("Objects after a cut-short dump = %d counters, %v; want 10,000", len(objs.Counters), err)
	}
}
