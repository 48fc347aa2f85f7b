package ctnl

// The Dumper over a fake socket (socket_fake_test.go): answers split over
// datagrams, refusals, stale answers, abandoned dumps and the next one,
// silence, root-free.

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// seqOf returns a request's sequence number.
func seqOf(req []byte) uint32 {
	return binary.NativeEndian.Uint32(req[8:])
}

// entry is a dump's message for a TCP flow whose source port is port.
func entry(t testing.TB, seq uint32, port uint16, flags netlink.HeaderFlags) netlink.Message {
	m := destroyMessage(t, netfilter.ProtoIPv4, tuple(ctaTupleOrig, cli4, srv4, 6, port, 443))
	m.Header.Type = netlink.HeaderType(subsysCT<<8 | msgCTNew)
	m.Header.Sequence = seq
	m.Header.Flags = netlink.Multi | flags
	return m
}

// done ends the answer to request seq.
func done(seq uint32) netlink.Message {
	return netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: seq}, Data: make([]byte, 4)}
}

// ack is the NLMSG_ERROR message that answers request seq with errno, or
// acknowledges it when errno is 0.
func ack(seq uint32, errno unix.Errno) netlink.Message {
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	return netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: seq}, Data: append(data, make([]byte, 16)...)}
}

// answers makes a fake kernel's answer function from a function of the
// request's sequence number and the number of the request.
func answers(fn func(seq uint32, n int) []step) func([]byte) []step {
	var mu sync.Mutex
	n := 0
	return func(req []byte) []step {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		return fn(seqOf(req), i)
	}
}

// dumpPorts dumps with d and returns the source ports of the entries and
// the sizes of the batches fn was given.
func dumpPorts(ctx context.Context, d *Dumper, fn func() error) (ports []uint16, batches []int, st DumpStats, err error) {
	st, err = d.Dump(ctx, DumpFilter{}, func(fs []Flow) error {
		batches = append(batches, len(fs))
		for i := range fs {
			ports = append(ports, fs[i].Orig.SPort)
		}
		if fn != nil {
			return fn()
		}
		return nil
	})
	return ports, batches, st, err
}

func fakeDumper(t *testing.T, cfg DumpConfig, s *fakeSocket) *Dumper {
	t.Helper()
	d := newDumper(cfg, s)
	t.Cleanup(func() { d.Close() })
	return d
}

// TestDumpAnswerOverDatagrams: the entries of every datagram reach fn in
// batches of DumpConfig.Batch, those that do not decode are left out, and
// the stats count entries and bytes and see NLM_F_DUMP_FILTERED.
func TestDumpAnswerOverDatagrams(t *testing.T) {
	s := newFakeSocket()
	var bytes int
	noTuple := destroyMessage(t, netfilter.ProtoIPv4, u32(ctaStatus, 1))
	noTuple.Header.Type = netlink.HeaderType(subsysCT<<8 | msgCTNew)
	s.answer = answers(func(seq uint32, _ int) []step {
		noTuple.Header.Sequence = seq
		ds := [][]byte{
			datagram(entry(t, seq, 1, 0), entry(t, seq, 2, 0)),
			datagram(entry(t, seq, 3, 0), noTuple, entry(t, seq, 4, nlmFDumpFiltered), entry(t, seq, 5, 0)),
			datagram(done(seq)),
		}
		for _, d := range ds {
			bytes += len(d)
		}
		return []step{{datagrams: ds}}
	})
	d := fakeDumper(t, DumpConfig{Batch: 2}, s)
	ports, batches, st, err := dumpPorts(context.Background(), d, nil)
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	wantPorts(t, ports, 1, 5)
	if len(batches) != 3 || batches[0] != 2 || batches[1] != 2 || batches[2] != 1 {
		t.Errorf("batches %v, want [2 2 1]", batches)
	}
	if st.Entries != 5 || st.Bytes != bytes || !st.Filtered {
		t.Errorf("DumpStats %+v, want 5 entries, %d bytes, filtered", st, bytes)
	}
	s.mu.Lock()
	req := s.requests[0]
	s.mu.Unlock()
	m, _, err := nextMessage(req)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != subsysCT<<8|msgCTGet || m.Flags != nlmFRequest|nlmFDump {
		t.Errorf("request type %#x flags %#x, want a conntrack GET dump", m.Type, m.Flags)
	}
}

// TestDumpInterruptedFlag: ctnetlink resumes a dump by position and never
// flags it NLM_F_DUMP_INTR (the table is no snapshot, as Dump says); a
// flagged part is read like any other.
func TestDumpInterruptedFlag(t *testing.T) {
	s := newFakeSocket()
	s.answer = answers(func(seq uint32, _ int) []step {
		return []step{{datagrams: [][]byte{
			datagram(entry(t, seq, 1, 0)),
			datagram(entry(t, seq, 2, nlwire.FlagDumpInterrupted), done(seq)),
		}}}
	})
	d := fakeDumper(t, DumpConfig{}, s)
	ports, _, _, err := dumpPorts(context.Background(), d, nil)
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	wantPorts(t, ports, 1, 2)
}

// TestDumpKernelAnswers: a refusal is the dump's error; an acknowledgement
// ends it without one; a garbled datagram is an error.
func TestDumpKernelAnswers(t *testing.T) {
	garbled := func(seq uint32) []byte {
		b := datagram(entry(t, seq, 1, 0))
		return b[:len(b)-3]
	}
	tests := []struct {
		name   string
		answer func(seq uint32) [][]byte
		want   error
	}{
		{"refused", func(seq uint32) [][]byte { return [][]byte{datagram(ack(seq, unix.EPERM))} }, unix.EPERM},
		{"acknowledged", func(seq uint32) [][]byte { return [][]byte{datagram(ack(seq, 0))} }, nil},
		{"garbled", func(seq uint32) [][]byte { return [][]byte{garbled(seq)} }, errTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSocket()
			s.answer = answers(func(seq uint32, _ int) []step { return []step{{datagrams: tt.answer(seq)}} })
			d := fakeDumper(t, DumpConfig{Timeout: 100 * time.Millisecond}, s)
			_, _, _, err := dumpPorts(context.Background(), d, nil)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Dump: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDumpAbandonedThenAgain: a dump that fn stops is read to its end
// before Dump returns, so that the next dump reads only its own answer; and
// one that the context ends while the kernel is slow leaves its late rest
// to the next dump, which skips it by sequence number.
func TestDumpAbandonedThenAgain(t *testing.T) {
	errStop := errors.New("stop")
	t.Run("fn fails", func(t *testing.T) {
		s := newFakeSocket()
		s.answer = answers(func(seq uint32, n int) []step {
			first := uint16(100 * n)
			return []step{{datagrams: [][]byte{
				datagram(entry(t, seq, first+1, 0), entry(t, seq, first+2, 0)),
				datagram(entry(t, seq, first+3, 0), entry(t, seq, first+4, 0)),
				datagram(done(seq)),
			}}}
		})
		d := fakeDumper(t, DumpConfig{Batch: 2}, s)
		_, _, _, err := dumpPorts(context.Background(), d, func() error { return errStop })
		if !errors.Is(err, errStop) {
			t.Fatalf("Dump: %v, want fn's error", err)
		}
		if n := s.pending(); n != 0 {
			t.Fatalf("%d receives of the abandoned dump left unread", n)
		}
		ports, _, _, err := dumpPorts(context.Background(), d, nil)
		if err != nil {
			t.Fatalf("second Dump: %v", err)
		}
		wantPorts(t, ports, 201, 4)
	})
	t.Run("context ends", func(t *testing.T) {
		s := newFakeSocket()
		var late []byte
		s.answer = answers(func(seq uint32, n int) []step {
			if n == 1 {
				late = datagram(entry(t, seq, 2, 0), done(seq))
				return []step{{datagrams: [][]byte{datagram(entry(t, seq, 1, 0))}}}
			}
			return []step{{datagrams: [][]byte{datagram(entry(t, seq, 201, 0), done(seq))}}}
		})
		// A timeout below the socket's 250ms: the drain after the
		// abandoned dump gives up at the first silence.
		d := fakeDumper(t, DumpConfig{Batch: 1, Timeout: 100 * time.Millisecond}, s)
		ctx, cancel := context.WithCancel(context.Background())
		ports, _, _, err := dumpPorts(ctx, d, func() error { cancel(); return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Dump: %v, want context.Canceled", err)
		}
		wantPorts(t, ports, 1, 1)
		s.push(step{datagrams: [][]byte{late}})
		ports, _, _, err = dumpPorts(context.Background(), d, nil)
		if err != nil {
			t.Fatalf("second Dump: %v", err)
		}
		wantPorts(t, ports, 201, 1)
	})
}

// TestDumpSilence: a kernel that stops answering fails the dump after the
// Dumper's timeout; EINTR is read again, other errors end the dump, a
// permission error naming the capability.
func TestDumpSilence(t *testing.T) {
	s := newFakeSocket()
	s.answer = answers(func(seq uint32, _ int) []step {
		return []step{{err: unix.EINTR}, {datagrams: [][]byte{datagram(entry(t, seq, 1, 0))}}}
	})
	d := fakeDumper(t, DumpConfig{Timeout: time.Second}, s)
	start := time.Now()
	ports, _, _, err := dumpPorts(context.Background(), d, nil)
	if !errors.Is(err, unix.EAGAIN) || !strings.Contains(err.Error(), "no answer from the kernel for 1s") {
		t.Fatalf("Dump: %v, want no answer for 1s", err)
	}
	wantPorts(t, ports, 0, 0)
	// The fake's receive timeout is 2ms, counted as the real 250ms.
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Dump gave up after %v: it should count receive timeouts, not wall time", el)
	}

	s = newFakeSocket()
	s.answer = answers(func(uint32, int) []step { return []step{{err: unix.EPERM}} })
	d = fakeDumper(t, DumpConfig{}, s)
	_, _, _, err = dumpPorts(context.Background(), d, nil)
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Fatalf("Dump: %v, want EPERM naming CAP_NET_ADMIN", err)
	}
}

// TestDumpBusyAndClosed: a call while a dump runs fails at once, as does
// one after Close.
func TestDumpBusyAndClosed(t *testing.T) {
	s := newFakeSocket()
	s.answer = answers(func(seq uint32, _ int) []step {
		return []step{{datagrams: [][]byte{datagram(entry(t, seq, 1, 0), done(seq))}}}
	})
	d := fakeDumper(t, DumpConfig{}, s)
	inFn, release := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := dumpPorts(context.Background(), d, func() error {
			close(inFn)
			<-release
			return nil
		})
		errc <- err
	}()
	<-inFn
	if _, _, _, err := dumpPorts(context.Background(), d, nil); !errors.Is(err, errDumpBusy) {
		t.Errorf("Dump during a dump: %v, want errDumpBusy", err)
	}
	if _, _, err := d.Lookup(context.Background(), &Flow{}); !errors.Is(err, errDumpBusy) {
		t.Errorf("Lookup during a dump: %v, want errDumpBusy", err)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Errorf("the first Dump: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := dumpPorts(context.Background(), d, nil); !errors.Is(err, errDumperClosed) {
		t.Errorf("Dump after Close: %v, want errDumperClosed", err)
	}
	if _, _, err := d.Lookup(context.Background(), &Flow{}); !errors.Is(err, errDumperClosed) {
		t.Errorf("Lookup after Close: %v, want errDumperClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, _, closes := s.counts(); closes != 1 {
		t.Errorf("socket closed %d times, want once", closes)
	}
}

// TestLookup: the entry and the acknowledgement after it; ENOENT is no
// entry, not an error; another refusal is one; a flow without an IP tuple
// is refused before anything is sent.
func TestLookup(t *testing.T) {
	f := Flow{Family: 4, Orig: Tuple{Src: cli4, Dst: srv4, Proto: 6, SPort: 7, DPort: 443}}
	tests := []struct {
		name    string
		answer  func(seq uint32) []byte
		found   bool
		wantErr error
	}{
		{"found", func(seq uint32) []byte { return datagram(entry(t, seq-1, 6, 0), entry(t, seq, 7, 0), ack(seq, 0)) }, true, nil},
		{"not found", func(seq uint32) []byte { return datagram(ack(seq, unix.ENOENT)) }, false, nil},
		{"refused", func(seq uint32) []byte { return datagram(ack(seq, unix.EPERM)) }, false, unix.EPERM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSocket()
			s.answer = answers(func(seq uint32, _ int) []step { return []step{{datagrams: [][]byte{tt.answer(seq)}}} })
			d := fakeDumper(t, DumpConfig{}, s)
			got, found, err := d.Lookup(context.Background(), &f)
			if found != tt.found || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Lookup = %v, %v; want found %v, error %v", found, err, tt.found, tt.wantErr)
			}
			if found && got.Orig != f.Orig {
				t.Errorf("Lookup found %+v, want %+v", got.Orig, f.Orig)
			}
			s.mu.Lock()
			req := s.requests[0]
			s.mu.Unlock()
			if m, _, err := nextMessage(req); err != nil || m.Flags != nlmFRequest|nlmFAck {
				t.Errorf("request flags %#x (%v), want a request with an acknowledgement", m.Flags, err)
			}
		})
	}
	s := newFakeSocket()
	d := fakeDumper(t, DumpConfig{}, s)
	if _, _, err := d.Lookup(context.Background(), &Flow{Family: 4}); !errors.Is(err, errLookupTuple) {
		t.Errorf("Lookup without a tuple: %v, want errLookupTuple", err)
	}
	if len(s.requests) != 0 {
		t.Error("Lookup without a tuple sent a request")
	}
}
