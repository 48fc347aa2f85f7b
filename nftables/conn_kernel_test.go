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
	if _, err := raw.c.Send(req); err != nil {
		t.Fatal(err)
	}
	if err := raw.dumpOnce(msgGetObj, msgNewObj, func(Family, []byte) error { return nil }); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("a dump while another runs on the socket: error = %v, want EBUSY", err)
	}

	c, err := Dial(&Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	err = c.dump(context.Background(), msgGetObj, msgNewObj, func() {}, func(Family, []byte) error {
		if n++; n == 1 {
			// What the deadline does when it passes.
			return c.c.SetDeadline(time.Unix(1, 0))
		}
		return nil
	})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a dump whose deadline passed after %d objects: error = %v, want os.ErrDeadlineExceeded", n, err)
	}
	if c.c != nil {
		t.Fatal("the socket of a cut-short dump was kept")
	}
	objs, err := c.Objects(context.Background())
	if err != nil || len(objs.Counters) != 10000 {
		t.Fatalf("Objects after a cut-short dump = %d counters, %v; want 10,000", len(objs.Counters), err)
	}
}
