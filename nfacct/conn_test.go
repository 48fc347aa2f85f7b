package nfacct

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netlinktest"
)

// The Conn and the Listener against a fake kernel (internal/netlinktest):
// the answers and failures the real kernel gives rarely or never on demand.
// The kernel tests (nfacct_kernel_test.go) check the same calls for real.

// objectMessage is the kernel's message for o.
func objectMessage(t *testing.T, o Object) netlink.Message {
	t.Helper()
	attrs := []netfilter.Attribute{name(o.Name), u64(attrPkts, o.Packets), u64(attrBytes, o.Bytes), u32(attrUse, o.Use)}
	if o.HasQuota() {
		attrs = append(attrs, u32(attrFlags, uint32(o.Flags)), u64(attrQuota, o.Quota))
	}
	return acctMessage(t, attrs...)
}

// acctMessage is an nfnetlink_acct NEW message with attrs.
func acctMessage(t *testing.T, attrs ...netfilter.Attribute) netlink.Message {
	t.Helper()
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysAcct, MessageType: msgNew}, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fakeConn is a Conn whose requests fn answers, with a short timeout. It
// returns the kernel side of each socket the Conn dials, the latest last.
func fakeConn(t *testing.T, fn netlinktest.Func) (*Conn, *[]*netlinktest.Kernel) {
	var kernels []*netlinktest.Kernel
	c, err := newConn(func() (*netlink.Conn, error) {
		nc, k := netlinktest.Dial(t, fn)
		kernels = append(kernels, k)
		return nc, nil
	}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, &kernels
}

// dump answers a dump request with msgs, as the kernel does: a multi-part
// answer ending in NLMSG_DONE.
func dump(msgs ...netlink.Message) netlinktest.Func {
	return netlinktest.Messages(func(req []netlink.Message) ([]netlink.Message, error) {
		return nltest.Multipart(append(msgs, netlink.Message{}))
	})
}

func TestConnList(t *testing.T) {
	want := []Object{
		{Name: "ipv4.http", Packets: 7, Bytes: 896, Use: 2},
		{Name: "q", Packets: 3, Bytes: 300, Use: 1, Flags: FlagQuotaPackets | FlagOverQuota, Quota: 3},
	}
	check := nltest.CheckRequest(
		[]netlink.HeaderType{netlink.HeaderType(netfilter.NFSubsysAcct)<<8 | netlink.HeaderType(msgGet)},
		[]netlink.HeaderFlags{netlink.Request | netlink.Dump},
		func(req []netlink.Message) ([]netlink.Message, error) {
			return nltest.Multipart([]netlink.Message{objectMessage(t, want[0]), objectMessage(t, want[1]), {}})
		})
	c, _ := fakeConn(t, netlinktest.Messages(check))
	got, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

// TestConnKernelRefuses: an error the kernel answers reaches the caller,
// wrapped, with the errno for errors.Is and the object named.
func TestConnKernelRefuses(t *testing.T) {
	refuse := func(errno unix.Errno) netlinktest.Func {
		return netlinktest.Messages(func(req []netlink.Message) ([]netlink.Message, error) {
			return netlinktest.Error(errno, req)
		})
	}
	tests := []struct {
		name  string
		errno unix.Errno
		call  func(*Conn) error
		want  string
	}{
		{"list", unix.EPERM, func(c *Conn) error { _, err := c.List(context.Background()); return err }, "dumping nfacct objects"},
		{"create", unix.EEXIST, func(c *Conn) error { return c.Create(context.Background(), Object{Name: "dup"}) }, `creating nfacct object "dup"`},
		{"delete", unix.EBUSY, func(c *Conn) error { return c.Delete(context.Background(), "used") }, `deleting nfacct object "used"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeConn(t, refuse(tt.errno))
			err := tt.call(c)
			if !errors.Is(err, tt.errno) || !strings.Contains(fmtErr(err), tt.want) {
				t.Errorf("error = %v, want %v naming %q", err, tt.errno, tt.want)
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestConnGarbledAnswers: a dump whose messages do not decode fails with an
// error that says why, and never returns half-read objects as a result.
func TestConnGarbledAnswers(t *testing.T) {
	good := objectMessage(t, Object{Name: "ok", Packets: 1, Bytes: 2, Use: 1})
	// An attribute that claims more bytes than the message holds.
	truncated := good
	truncated.Data = append(append([]byte(nil), good.Data[:4]...), 0x20, 0x00, attrName, 0x00, 'x')
	otherSubsys, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: 0}, []netfilter.Attribute{name("ct")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		msg  netlink.Message
		want error
		text string
	}{
		{"truncated attribute", truncated, errBadAttribute, ""},
		{"another subsystem", otherSubsys, errUnexpected, "subsystem"},
		{"no name", acctMessage(t, u64(attrPkts, 1)), errNoName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeConn(t, dump(good, tt.msg))
			objs, err := c.List(context.Background())
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("List = %v, %v; want an error (%v, %q)", objs, err, tt.want, tt.text)
			}
			if objs != nil {
				t.Errorf("List returned objects %v with its error", objs)
			}
		})
	}
}

// TestConnTimeout: a kernel that never answers makes the request fail at
// the Conn's timeout, with os.ErrDeadlineExceeded; a cancelled context
// makes it fail with context.Canceled.
func TestConnTimeout(t *testing.T) {
	silent := func([]netlink.Message) ([][]byte, error) { return nil, nil }
	c, _ := fakeConn(t, silent)
	if _, err := c.List(context.Background()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("List from a silent kernel: error = %v, want a deadline exceeded", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := c.List(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("List cancelled while it waits: error = %v, want context.Canceled", err)
	}
}

// TestConnLateAnswer: the answer to a request that timed out comes after
// all, before the next request. The next request must get its own answer,
// not the late one: the Conn leaves the socket of a failed request.
func TestConnLateAnswer(t *testing.T) {
	first := true
	var late []byte
	c, kernels := fakeConn(t, func(req []netlink.Message) ([][]byte, error) {
		answer, err := dump(objectMessage(t, Object{Name: "x", Packets: 1}))(req)
		if first {
			first, late = false, answer[0]
			return nil, err
		}
		return answer, err
	})
	if _, err := c.List(context.Background()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first List: error = %v, want a deadline exceeded", err)
	}
	// On a socket still open, the late answer waits for the next read.
	if k := (*kernels)[0]; !k.Closed() {
		if err := k.Send(late); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if objs, err := c.List(context.Background()); err != nil || len(objs) != 1 || objs[0].Name != "x" {
			t.Errorf("List %d after a late answer = %v, %v; want object x", i+2, objs, err)
		}
	}
}

func TestConnClosed(t *testing.T) {
	c, kernels := fakeConn(t, dump())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	k := (*kernels)[0]
	if !k.Closed() {
		t.Error("Close did not close the socket")
	}
	if _, err := c.List(context.Background()); !errors.Is(err, errClosed) {
		t.Errorf("List after Close: error = %v, want errClosed", err)
	}
	if len(*kernels) != 1 || k.Requests() != 0 {
		t.Errorf("%d sockets dialled and %d requests sent after Close", len(*kernels), k.Requests())
	}
}

func TestListenerReceive(t *testing.T) {
	nc, k := netlinktest.Dial(t, func([]netlink.Message) ([][]byte, error) { return nil, nil })
	l, err := newListener(nc)
	if err != nil {
		t.Fatal(err)
	}
	if g := k.Groups(); !cmp.Equal(g, []uint32{uint32(netfilter.GroupAcctQuota)}) {
		t.Errorf("joined groups %v, want NFNLGRP_ACCT_QUOTA only", g)
	}
	ct, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: 0}, []netfilter.Attribute{name("ct")})
	if err != nil {
		t.Fatal(err)
	}
	over := Object{Name: "q", Packets: 4, Bytes: 400, Use: 2, Flags: FlagQuotaPackets | FlagOverQuota, Quota: 3}
	// A message of another subsystem in the same datagram is skipped.
	if err := k.Send(netlinktest.Datagram(ct, objectMessage(t, over))); err != nil {
		t.Fatal(err)
	}
	objs, err := l.Receive(context.Background())
	if err != nil || !cmp.Equal(objs, []Object{over}) {
		t.Errorf("Receive = %v, %v; want %v", objs, err, over)
	}

	// An undecodable notification is an error, after what came before it.
	bad := acctMessage(t, u64(attrPkts, 1))
	if err := k.Send(netlinktest.Datagram(objectMessage(t, over), bad)); err != nil {
		t.Fatal(err)
	}
	if objs, err := l.Receive(context.Background()); !errors.Is(err, errNoName) || len(objs) != 1 {
		t.Errorf("Receive of a notification without a name = %v, %v; want q and errNoName", objs, err)
	}

	// Cancelling ctx ends a Receive that waits.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := l.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Receive cancelled while it waits: error = %v, want context.Canceled", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !k.Closed() {
		t.Error("Close did not close the socket")
	}
}
