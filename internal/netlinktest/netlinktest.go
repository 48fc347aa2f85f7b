package netlinktest

// The fake kernel: a socket pair, the function that answers, and the
// datagrams it writes.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// PID is the port id of the client's socket, as nltest.PID.
const PID = nltest.PID

// Func answers the messages of one request with datagrams, each as the
// kernel would write it (Datagram makes one from messages). No datagram and
// no error: the kernel never answers. An error is returned by the client's
// next receive, as a socket error.
type Func func(req []netlink.Message) ([][]byte, error)

// Messages turns an nltest.Func into a Func: its messages go in one
// datagram; those with no sequence number or port id get the request's.
// nltest.Func's nil, nil means no answer here, not a multicast message
// (Kernel.Send sends those).
func Messages(fn nltest.Func) Func {
	return func(req []netlink.Message) ([][]byte, error) {
		msgs, err := fn(req)
		if err != nil || len(msgs) == 0 {
			return nil, err
		}
		for i := range msgs {
			if msgs[i].Header.Sequence == 0 {
				msgs[i].Header.Sequence = req[0].Header.Sequence
			}
			if msgs[i].Header.PID == 0 {
				msgs[i].Header.PID = req[0].Header.PID
			}
		}
		return [][]byte{Datagram(msgs...)}, nil
	}
}

// Datagram writes messages into one datagram, each with its length set and
// its data padded to 4 bytes, as the kernel does.
func Datagram(msgs ...netlink.Message) []byte {
	var b []byte
	for _, m := range msgs {
		n := 16 + len(m.Data)
		m.Header.Length = uint32(align(n))
		m.Data = append(m.Data[:len(m.Data):len(m.Data)], make([]byte, align(n)-n)...)
		mb, err := m.MarshalBinary()
		if err != nil {
			panic(fmt.Sprintf("netlinktest: marshalling %+v: %v", m.Header, err))
		}
		b = append(b, mb...)
	}
	return b
}

func align(n int) int { return (n + 3) &^ 3 }

// Error is the kernel's answer refusing req with errno, as an nltest.Func
// returns it: an NLMSG_ERROR message holding the negative errno and the
// request's header and payload. Unlike nltest.Error's, it keeps none of the
// request's flags, which netlink would read as extended acknowledgement
// flags (NLM_F_DUMP shares its bits).
func Error(errno unix.Errno, req []netlink.Message) ([]netlink.Message, error) {
	r := req[0]
	r.Header.Length = uint32(align(16 + len(r.Data)))
	orig, err := r.MarshalBinary()
	if err != nil {
		return nil, err
	}
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	return []netlink.Message{{
		Header: netlink.Header{Type: netlink.Error, Sequence: r.Header.Sequence, PID: r.Header.PID},
		Data:   append(data, orig...),
	}}, nil
}

// Kernel is the fake kernel's side of one socket.
type Kernel struct {
	s *socket
}

// Dial returns a netlink.Conn whose requests fn answers, and its Kernel.
// Both are closed when the test ends.
func Dial(t testing.TB, fn Func) (*netlink.Conn, *Kernel) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("netlinktest: socketpair: %v", err)
	}
	// Non-blocking, the client's end is pollable: deadlines and
	// syscall.Conn work on it.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatalf("netlinktest: %v", err)
	}
	s := &socket{f: os.NewFile(uintptr(fds[0]), "netlinktest"), peer: fds[1], fn: fn}
	c := netlink.NewConn(s, PID)
	t.Cleanup(func() { c.Close() })
	return c, &Kernel{s: s}
}

// Send sends a datagram the client did not ask for, as a multicast
// notification.
func (k *Kernel) Send(datagram []byte) error {
	return k.s.write(datagram)
}

// Groups returns the multicast groups the client has joined.
func (k *Kernel) Groups() []uint32 {
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	return append([]uint32(nil), k.s.groups...)
}

// Requests returns how many requests the client has sent.
func (k *Kernel) Requests() int {
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	return k.s.requests
}

// Closed reports whether the client closed its socket.
func (k *Kernel) Closed() bool {
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	return k.s.closed
}

// socket is the client's netlink.Socket.
type socket struct {
	f    *os.File
	peer int
	fn   Func

	mu       sync.Mutex
	err      error // returned by the next Receive
	groups   []uint32
	requests int
	closed   bool
}

// The socket is a syscall.Conn: the clients read it raw.
var _ syscall.Conn = (*socket)(nil)

func (s *socket) Send(m netlink.Message) error {
	return s.SendMessages([]netlink.Message{m})
}

func (s *socket) SendMessages(ms []netlink.Message) error {
	// The kernel reads the request as bytes.
	var b []byte
	for _, m := range ms {
		mb, err := m.MarshalBinary()
		if err != nil {
			return err
		}
		b = append(b, mb...)
	}
	req, err := parse(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	answers, err := s.fn(req)
	if err != nil {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}
	for _, d := range answers {
		if err := s.write(d); err != nil {
			return err
		}
	}
	return nil
}

// write puts a datagram in the client's receive queue.
func (s *socket) write(d []byte) error {
	if len(d) == 0 {
		return errors.New("netlinktest: an empty datagram would read as end of file")
	}
	_, err := unix.Write(s.peer, d)
	return err
}

func (s *socket) Receive() ([]netlink.Message, error) {
	s.mu.Lock()
	err := s.err
	s.err = nil
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 1<<20)
	n, err := s.f.Read(b)
	if err != nil {
		return nil, err
	}
	return parse(b[:n])
}

func (s *socket) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.f.Close()
	unix.Close(s.peer)
	return err
}

func (s *socket) SetDeadline(t time.Time) error      { return s.f.SetDeadline(t) }
func (s *socket) SetReadDeadline(t time.Time) error  { return s.f.SetReadDeadline(t) }
func (s *socket) SetWriteDeadline(t time.Time) error { return s.f.SetWriteDeadline(t) }

func (s *socket) SyscallConn() (syscall.RawConn, error) { return s.f.SyscallConn() }

func (s *socket) JoinGroup(group uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups = append(s.groups, group)
	return nil
}

func (s *socket) LeaveGroup(group uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range s.groups {
		if g == group {
			s.groups = append(s.groups[:i], s.groups[i+1:]...)
			return nil
		}
	}
	return unix.ENOENT
}

// errMalformed is what Receive returns for a datagram that does not split
// into whole netlink messages; the real socket's client, netlink.Conn,
// refuses it the same way.
var errMalformed = errors.New("netlinktest: malformed netlink datagram")

// parse splits a datagram into messages.
func parse(b []byte) ([]netlink.Message, error) {
	var msgs []netlink.Message
	for len(b) > 0 {
		if len(b) < 16 {
			return nil, fmt.Errorf("%w: %d bytes left", errMalformed, len(b))
		}
		l := int(binary.NativeEndian.Uint32(b))
		if l < 16 || l > len(b) || l != align(l) {
			return nil, fmt.Errorf("%w: length %d with %d bytes left", errMalformed, l, len(b))
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			return nil, fmt.Errorf("%w: %w", errMalformed, err)
		}
		msgs = append(msgs, m)
		b = b[l:]
	}
	return msgs, nil
}
