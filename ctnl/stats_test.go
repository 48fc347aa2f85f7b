package ctnl

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// statsSocket is a netlink.Socket that answers the statistics requests as
// the kernel does, from a queue of datagrams that stay until they are read:
// an answer that comes after its reader gave up is still there for the next
// read, which is what a real socket does with a late reply.
type statsSocket struct {
	mu     sync.Mutex
	queue  [][]netlink.Message
	closed bool
	// lateAt is the request (counting from 1) whose answer comes only
	// after the reader's deadline: its read times out, and its answer is
	// queued when the next request is sent. 0: none.
	lateAt, sent int
	pending      [][]netlink.Message
}

func (s *statsSocket) Send(m netlink.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return os.ErrClosed
	}
	s.queue = append(s.queue, s.pending...)
	s.pending = nil
	answer := statsAnswer(m)
	if s.sent++; s.sent == s.lateAt {
		s.pending = answer
		return nil
	}
	s.queue = append(s.queue, answer...)
	return nil
}

func (s *statsSocket) SendMessages(ms []netlink.Message) error {
	for _, m := range ms {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func (s *statsSocket) Receive() ([]netlink.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, os.ErrClosed
	}
	if len(s.queue) == 0 {
		return nil, os.ErrDeadlineExceeded
	}
	d := s.queue[0]
	s.queue = s.queue[1:]
	return d, nil
}

func (s *statsSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *statsSocket) SetDeadline(time.Time) error      { return nil }
func (s *statsSocket) SetReadDeadline(time.Time) error  { return nil }
func (s *statsSocket) SetWriteDeadline(time.Time) error { return nil }

// statsAnswer returns the datagrams the kernel sends for a statistics
// request: the global statistics and an acknowledgement, or one record per
// CPU (two here) and DONE.
func statsAnswer(req netlink.Message) [][]netlink.Message {
	reply := func(typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Type: typ, Flags: flags, Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   data,
		}
	}
	attrs := func(as ...netfilter.Attribute) []byte {
		b, err := netfilter.MarshalAttributes(as)
		if err != nil {
			panic(err)
		}
		return append([]byte{0, 0, 0, 0}, b...) // nfgenmsg
	}
	switch uint16(req.Header.Type) {
	case subsysCT<<8 | msgCTGetStats:
		return [][]netlink.Message{
			{reply(req.Header.Type, netlink.Multi, attrs(u32(ctaStatsGlobalEntries, 12), u32(ctaStatsGlobalMaxEntries, 262144)))},
			{reply(netlink.Error, 0, make([]byte, 4+16))},
		}
	case subsysCT<<8 | msgCTGetStatsCPU:
		cpu := reply(req.Header.Type, netlink.Multi, attrs(u32(ctaStatsDrop, 3), u32(ctaStatsInvalid, 5)))
		return [][]netlink.Message{{cpu, cpu, reply(netlink.Done, netlink.Multi, make([]byte, 4))}}
	}
	return [][]netlink.Message{{reply(netlink.Error, 0, []byte{0xea, 0xff, 0xff, 0xff /* -EINVAL */, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})}}
}

// TestTableStatsAfterLateAnswer checks that a request whose answer comes
// after its deadline does not break the next ones: the late answer must
// not be read as theirs (before the fix, every following request failed
// with "mismatched sequence in netlink reply" until a restart).
func TestTableStatsAfterLateAnswer(t *testing.T) {
	want := TableStats{Entries: 12, MaxEntries: 262144, CPUs: 2, Drop: 6, Invalid: 10}
	// late 1: the global request times out; 2: the per-CPU one does,
	// after the global one answered in time; 3: the global request of the
	// second reading does.
	for _, late := range []int{1, 2, 3} {
		var sockets []*statsSocket
		c, err := newConn(func() (*netlink.Conn, error) {
			s := &statsSocket{}
			if len(sockets) == 0 {
				s.lateAt = late
			}
			sockets = append(sockets, s)
			return netlink.NewConn(s, 1), nil
		}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if late == 3 {
			if got, err := c.TableStats(context.Background()); err != nil || got != want {
				t.Fatalf("first reading = %+v, %v; want %+v", got, err, want)
			}
		}
		if _, err := c.TableStats(context.Background()); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("late %d: TableStats = %v, want a timeout", late, err)
		}
		for i := range 3 {
			got, err := c.TableStats(context.Background())
			if err != nil {
				t.Fatalf("late %d: request %d after the timeout: %v", late, i+1, err)
			}
			if got != want {
				t.Errorf("late %d: request %d after the timeout = %+v, want %+v", late, i+1, got, want)
			}
		}
		if len(sockets) != 2 || !sockets[0].closed || sockets[1].closed {
			t.Errorf("late %d: %d sockets dialled, first closed %v: want the timed-out one closed and one new", late, len(sockets), sockets[0].closed)
		}
		c.Close()
		if _, err := c.TableStats(context.Background()); !errors.Is(err, errClosed) {
			t.Errorf("TableStats after Close = %v, want %v", err, errClosed)
		}
	}
}
