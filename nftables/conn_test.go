package nftables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netlinktest"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// The Conn against a fake kernel (internal/netlinktest) that writes raw
// datagrams, as the Conn reads them: the answers and failures the real
// kernel gives rarely or never on demand. conn_kernel_test.go and
// nftables_kernel_test.go check the same calls for real.

// fakeKernel answers each dump request with the datagrams answer returns
// for it; it records every socket the Conn dials.
type fakeKernel struct {
	t       *testing.T
	answer  func(req netlink.Message, n int) [][]byte
	kernels []*netlinktest.Kernel
	n       int // requests so far, all sockets together
}

// newFake returns a Conn, with a timeout of 200ms, on a fakeKernel.
func newFake(t *testing.T, answer func(req netlink.Message, n int) [][]byte) (*Conn, *fakeKernel) {
	t.Helper()
	return newFakeTimeout(t, 200*time.Millisecond, answer)
}

// newFakeTimeout is newFake with another timeout. The fake kernel answers
// within the request's deadline: a slow answer needs a longer one.
func newFakeTimeout(t *testing.T, timeout time.Duration, answer func(req netlink.Message, n int) [][]byte) (*Conn, *fakeKernel) {
	t.Helper()
	f := &fakeKernel{t: t, answer: answer}
	c, err := newConn(func() (*netlink.Conn, error) {
		nc, k := netlinktest.Dial(t, func(req []netlink.Message) ([][]byte, error) {
			f.n++
			return f.answer(req[0], f.n), nil
		})
		f.kernels = append(f.kernels, k)
		return nc, nil
	}, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, f
}

// msg is one message of an answer to req: its sequence, type and flags,
// the family in its nfgenmsg header and its attributes.
func msg(t testing.TB, req netlink.Message, typ uint16, flags netlink.HeaderFlags, family Family, a ...netfilter.Attribute) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags, Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   append([]byte{byte(family), unix.NFNETLINK_V0, 0, 0}, attrs(t, a...)...),
	}
}

// done is the NLMSG_DONE that ends a dump, with errno (0: none).
func done(req netlink.Message, errno unix.Errno) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: nlwire.TypeDone, Flags: netlink.Multi, Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno))),
	}
}

func counterObj(t testing.TB, req netlink.Message, family Family, table, name string, pkts, bytes uint64) netlink.Message {
	return msg(t, req, subsysNftables<<8|msgNewObj, netlink.Multi, family,
		str(objTable, table), str(objName, name), u32(objType, objectCounter), counterData(pkts, bytes))
}

func TestConnObjects(t *testing.T) {
	c, f := newFake(t, func(req netlink.Message, _ int) [][]byte {
		if want := netlink.HeaderType(subsysNftables<<8 | msgGetObj); req.Header.Type != want || req.Header.Flags != netlink.Request|netlink.Dump {
			t.Errorf("request type %#x flags %s, want %#x and request|dump", req.Header.Type, req.Header.Flags, want)
		}
		other := req
		other.Header.Sequence++
		return [][]byte{
			netlinktest.Datagram(counterObj(t, req, FamilyINet, "filter", "web", 12, 3400),
				// An answer to another request is not part of this one.
				counterObj(t, other, FamilyINet, "filter", "stray", 1, 1)),
			netlinktest.Datagram(msg(t, req, subsysNftables<<8|msgNewObj, netlink.Multi, FamilyIPv4,
				str(objTable, "t"), str(objName, "q"), u32(objType, objectQuota),
				nested(objData, u64(quotaBytes, 1000), u64(quotaConsumed, 10), u32(quotaFlags, 0)))),
			netlinktest.Datagram(done(req, 0)),
		}
	})
	got, err := c.Objects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Objects{
		Counters: []Counter{{Family: FamilyINet, Table: "filter", Name: "web", Packets: 12, Bytes: 3400}},
		Quotas:   []Quota{{Family: FamilyIPv4, Table: "t", Name: "q", Limit: 1000, Used: 10}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Objects (-want +got):\n%s", diff)
	}
	if len(f.kernels) != 1 {
		t.Errorf("%d sockets dialled for one clean dump, want 1", len(f.kernels))
	}
}

// TestConnLargeDatagram: a datagram larger than the read buffer is read
// whole: the buffer grows.
func TestConnLargeDatagram(t *testing.T) {
	const n = 2000 // about 140 KiB in one datagram, past the 64 KiB buffer
	c, _ := newFakeTimeout(t, time.Minute, func(req netlink.Message, _ int) [][]byte {
		var msgs []netlink.Message
		for i := range n {
			msgs = append(msgs, counterObj(t, req, FamilyINet, "many", fmt.Sprintf("svc%d", i), uint64(i), 1))
		}
		return [][]byte{netlinktest.Datagram(msgs...), netlinktest.Datagram(done(req, 0))}
	})
	objs, err := c.Objects(context.Background())
	if err != nil || len(objs.Counters) != n || objs.Counters[n-1].Name != fmt.Sprintf("svc%d", n-1) {
		t.Fatalf("Objects = %d counters, %v; want %d", len(objs.Counters), err, n)
	}
}

// TestConnKernelRefuses: an error the kernel answers, as NLMSG_ERROR or in
// the NLMSG_DONE of a dump, reaches the caller with its errno; the socket,
// whose answer is over, is kept.
func TestConnKernelRefuses(t *testing.T) {
	tests := []struct {
		name   string
		answer func(req netlink.Message) []byte
		want   error
	}{
		{"error message", func(req netlink.Message) []byte {
			m, _ := netlinktest.Error(unix.EPERM, []netlink.Message{req})
			return netlinktest.Datagram(m...)
		}, unix.EPERM},
		{"error in done", func(req netlink.Message) []byte { return netlinktest.Datagram(done(req, unix.EINTR)) }, unix.EINTR},
		{"acknowledgement", func(req netlink.Message) []byte {
			m, _ := netlinktest.Error(0, []netlink.Message{req})
			return netlinktest.Datagram(m...)
		}, errUnexpected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newFake(t, func(req netlink.Message, _ int) [][]byte { return [][]byte{tt.answer(req)} })
			for range 2 {
				_, err := c.Objects(context.Background())
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "dumping nf_tables objects") {
					t.Errorf("Objects: error = %v, want %v", err, tt.want)
				}
			}
			if len(f.kernels) != 1 {
				t.Errorf("%d sockets dialled, want 1: the answer was whole", len(f.kernels))
			}
		})
	}
}

// TestConnGarbledAnswers: messages that do not decode fail the reading
// with an error that says why, and nothing half-read is returned. A message
// that does not decode is reported once the dump is over, so the socket
// stays; a datagram that does not split into messages leaves the rest of
// the dump unread, so the socket goes and the next reading dials anew.
func TestConnGarbledAnswers(t *testing.T) {
	tests := []struct {
		name     string
		answer   func(t *testing.T, req netlink.Message) [][]byte
		want     error
		redialed bool
	}{
		{"truncated netlink header", func(t *testing.T, req netlink.Message) [][]byte {
			d := netlinktest.Datagram(counterObj(t, req, FamilyINet, "t", "a", 1, 1))
			binary.NativeEndian.PutUint32(d, uint32(len(d)+8)) // longer than the datagram
			return [][]byte{d, netlinktest.Datagram(done(req, 0))}
		}, errTruncated, true},
		{"datagram shorter than a header", func(t *testing.T, req netlink.Message) [][]byte {
			return [][]byte{{1, 2, 3}, netlinktest.Datagram(done(req, 0))}
		}, errTruncated, true},
		{"no nfgenmsg header", func(t *testing.T, req netlink.Message) [][]byte {
			// A message of 2 bytes (nlmsg_len 18), padded to 4.
			d := netlinktest.Datagram(counterObj(t, req, FamilyINet, "t", "a", 1, 1))[:nlwire.HeaderLen+4]
			binary.NativeEndian.PutUint32(d, nlwire.HeaderLen+2)
			return [][]byte{append(d, netlinktest.Datagram(done(req, 0))...)}
		}, errTruncated, false},
		{"malformed attribute", func(t *testing.T, req netlink.Message) [][]byte {
			m := counterObj(t, req, FamilyINet, "t", "a", 1, 1)
			m.Data = append(m.Data[:nlwire.NfgenLen:nlwire.NfgenLen], 0xff, 0x00, objTable, 0x00, 't', 0, 0, 0)
			return [][]byte{netlinktest.Datagram(m, done(req, 0))}
		}, errAttribute, false},
		{"unexpected message type", func(t *testing.T, req netlink.Message) [][]byte {
			m := msg(t, req, subsysNftables<<8|msgNewRule, netlink.Multi, FamilyINet)
			return [][]byte{netlinktest.Datagram(m, done(req, 0))}
		}, errUnexpected, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newFake(t, func(req netlink.Message, n int) [][]byte {
				if n == 1 {
					return tt.answer(t, req)
				}
				return [][]byte{netlinktest.Datagram(counterObj(t, req, FamilyINet, "t", "ok", 1, 2), done(req, 0))}
			})
			objs, err := c.Objects(context.Background())
			if !errors.Is(err, tt.want) {
				t.Errorf("Objects = %+v, %v; want %v", objs, err, tt.want)
			}
			if len(objs.Counters)+len(objs.Quotas) != 0 {
				t.Errorf("Objects returned %+v with its error", objs)
			}
			if tt.redialed != (f.kernels[0].Closed()) {
				t.Errorf("socket of the garbled answer closed: %v, want %v", f.kernels[0].Closed(), tt.redialed)
			}
			objs, err = c.Objects(context.Background())
			if err != nil || len(objs.Counters) != 1 {
				t.Errorf("the next reading = %+v, %v; want counter ok", objs, err)
			}
		})
	}
}

// TestConnInterruptedDump: a dump the kernel flags as interrupted
// (NLM_F_DUMP_INTR) is read again, and what the interrupted one gave is
// discarded. One interrupted every time is restarted until the Conn's
// timeout or ctx ends it; the error says it was interrupted, how often, and
// what ended it.
func TestConnInterruptedDump(t *testing.T) {
	answer := func(interrupted bool) func(netlink.Message, int) [][]byte {
		return func(req netlink.Message, n int) [][]byte {
			flags := netlink.Multi
			if interrupted || n == 1 {
				flags |= nlwire.FlagDumpInterrupted
			}
			m := msg(t, req, subsysNftables<<8|msgNewObj, flags, FamilyINet,
				str(objTable, "t"), str(objName, fmt.Sprintf("try%d", n)), u32(objType, objectCounter), counterData(1, 1))
			return [][]byte{netlinktest.Datagram(m, done(req, 0))}
		}
	}
	c, _ := newFake(t, answer(false))
	objs, err := c.Objects(context.Background())
	if err != nil || len(objs.Counters) != 1 || objs.Counters[0].Name != "try2" {
		t.Errorf("Objects after one interrupted dump = %+v, %v; want the second try's counter only", objs, err)
	}

	for _, tt := range []struct {
		name string
		ctx  func() context.Context
		want error
	}{
		{"deadline", context.Background, os.ErrDeadlineExceeded},
		{"cancel", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx
		}, context.Canceled},
	} {
		t.Run("always/"+tt.name, func(t *testing.T) {
			timeout := 200 * time.Millisecond
			if tt.want == context.Canceled {
				timeout = 10 * time.Second // ctx ends it first
			}
			c, f := newFakeTimeout(t, timeout, answer(true))
			start := time.Now()
			_, err := c.Objects(tt.ctx())
			if !errors.Is(err, errInterrupted) || !errors.Is(err, tt.want) {
				t.Fatalf("Objects of dumps always interrupted: error = %v, want errInterrupted and %v", err, tt.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Objects took %v; the restarts did not stop at the end of %v", took, tt.want)
			}
			// Each dump but perhaps the last, cut by the deadline, was
			// interrupted; the error counts them.
			m := regexp.MustCompile(`while it was read (\d+) times, then: `).FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error %q does not say how often the dump was interrupted", err)
			}
			times, _ := strconv.Atoi(m[1])
			if f.n < 2 || times < f.n-1 || times > f.n {
				t.Errorf("error says %d interruptions, the fake kernel answered %d dumps; want at least 2 dumps and %d or %d", times, f.n, f.n-1, f.n)
			}
		})
	}
}

// TestConnTimeout: a kernel that stops answering makes the reading fail at
// the Conn's timeout (os.ErrDeadlineExceeded) or when ctx is cancelled
// (context.Canceled); either way the socket, with the rest of a dump
// perhaps still coming, goes, and the next reading dials a new one.
func TestConnTimeout(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  func() context.Context
		want error
	}{
		{"deadline", context.Background, os.ErrDeadlineExceeded},
		{"cancel", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx
		}, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newFake(t, func(req netlink.Message, n int) [][]byte {
				if n == 1 {
					// The first part of a dump, and no more.
					return [][]byte{netlinktest.Datagram(counterObj(t, req, FamilyINet, "t", "a", 1, 1))}
				}
				return [][]byte{netlinktest.Datagram(counterObj(t, req, FamilyINet, "t", "a", 1, 1), done(req, 0))}
			})
			if _, err := c.Objects(tt.ctx()); !errors.Is(err, tt.want) {
				t.Fatalf("Objects from a kernel that stops: error = %v, want %v", err, tt.want)
			}
			if !f.kernels[0].Closed() {
				t.Error("the socket of the cut-short dump was kept")
			}
			if objs, err := c.Objects(context.Background()); err != nil || len(objs.Counters) != 1 || len(f.kernels) != 2 {
				t.Errorf("the next reading = %+v, %v on socket %d; want counter a on a new socket", objs, err, len(f.kernels))
			}
		})
	}
}

func TestConnClosed(t *testing.T) {
	c, f := newFake(t, func(req netlink.Message, _ int) [][]byte { return [][]byte{netlinktest.Datagram(done(req, 0))} })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RuleCounters(context.Background()); !errors.Is(err, errClosed) {
		t.Errorf("RuleCounters after Close: error = %v, want errClosed", err)
	}
	if !f.kernels[0].Closed() || len(f.kernels) != 1 || f.n != 0 {
		t.Errorf("after Close: socket closed %v, %d sockets, %d requests; want closed, 1, 0", f.kernels[0].Closed(), len(f.kernels), f.n)
	}
}
