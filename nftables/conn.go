package nftables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlconn"
	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// DefaultTimeout bounds every request when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config configures a Conn.
type Config struct {
	// NetNS is an open file descriptor of the network namespace to talk to
	// (for example of /var/run/netns/fw); zero means the caller's namespace.
	// It must stay open as long as the Conn, which may dial again with it.
	NetNS int
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

// Conn is a request connection to nf_tables. It is safe for concurrent use;
// requests are serialised.
type Conn struct {
	sock *nlconn.Conn[*socket]
	// buf is the receive buffer, grown to the largest datagram so far;
	// it is used only inside sock.Do, which serialises.
	buf []byte

	// Sizes of the previous answers, to size the next ones.
	lastCounters, lastQuotas, lastRules atomic.Int64
}

// socket is one netlink socket of a Conn. The socket is dropped after a
// request was cut short, which leaves a dump running in the kernel (it
// would refuse the next one with EBUSY); the next request dials a fresh
// one.
type socket struct {
	*netlink.Conn
	rc syscall.RawConn
}

// Dial opens a Conn in the namespace cfg names. cfg may be nil.
func Dial(cfg *Config) (*Conn, error) {
	var netns int
	timeout := DefaultTimeout
	if cfg != nil {
		netns = cfg.NetNS
		if cfg.Timeout > 0 {
			timeout = cfg.Timeout
		}
	}
	return newConn(func() (*netlink.Conn, error) {
		return netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	}, timeout)
}

// newConn returns a Conn whose sockets dial opens.
func newConn(dial func() (*netlink.Conn, error), timeout time.Duration) (*Conn, error) {
	sock, err := nlconn.New(func() (*socket, error) {
		nc, err := dial()
		if err != nil {
			return nil, fmt.Errorf("opening nf_tables netlink socket: %w", err)
		}
		rc, err := nc.SyscallConn()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("opening nf_tables netlink socket: %w", err)
		}
		return &socket{Conn: nc, rc: rc}, nil
	}, timeout, errClosed)
	if err != nil {
		return nil, err
	}
	return &Conn{sock: sock, buf: make([]byte, 64<<10)}, nil
}

// Close closes the connection. It may be called more than once.
func (c *Conn) Close() error {
	return c.sock.Close()
}

// dump sends a dump request of type req for every family and calls fn with
// the family and the attributes of each answer of type answer. It restarts
// the dump, and discards what fn was given, when the kernel says the ruleset
// changed meanwhile, as often as the Conn's timeout and ctx allow (nft(8)
// restarts without bound): reset is called before every attempt. A ruleset
// that changes faster than a dump runs, for the whole timeout, gives an error
// that says how often the dump was interrupted.
//
// The kernel resumes a dump by position and flags (NLM_F_DUMP_INTR) a dump
// whose ruleset generation changed between two of its parts. One race goes
// unflagged: a commit bumps the generation before it unlinks what it
// deletes, so a dump whose first part starts in that window, a few
// instructions long, sees the new generation throughout and may miss one
// object. nft(8) has the same blind spot.
func (c *Conn) dump(ctx context.Context, req, answer uint16, reset func(), fn func(Family, []byte) error) error {
	return c.sock.Do(ctx, func(s *socket) error {
		var err error
		var whole bool
		interruptions := 0
		for {
			reset()
			whole, err = c.dumpOnce(s, req, answer, fn)
			if !errors.Is(err, errInterrupted) {
				break
			}
			interruptions++
		}
		if err != nil && interruptions > 0 {
			// The deadline ended the last attempt.
			err = fmt.Errorf("%w %d times, then: %w", errInterrupted, interruptions, err)
		}
		if whole {
			// The socket is in step with the kernel: it stays.
			return nlconn.Answered(err)
		}
		// Whatever stopped the reading before the end of the answer (a
		// deadline, a malformed datagram), the socket goes.
		return err
	})
}

// dumpOnce runs one dump on s; whole tells whether it got to the end of
// the answer. A message that does not decode is reported once the dump is
// over.
func (c *Conn) dumpOnce(s *socket, req, answer uint16, fn func(Family, []byte) error) (whole bool, err error) {
	sent, err := s.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(subsysNftables<<8 | req),
			Flags: netlink.Request | netlink.Dump,
		},
		// nfgenmsg: AF_UNSPEC (every family), NFNETLINK_V0, resource id 0.
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return false, fmt.Errorf("sending nf_tables dump request: %w", err)
	}
	r := dumpReader{seq: sent.Header.Sequence, answer: answer, fn: fn}
	for {
		b, err := c.recv(s)
		if err != nil {
			return false, fmt.Errorf("receiving nf_tables dump: %w", err)
		}
		done, err := r.datagram(b)
		if done {
			return true, err
		}
		if err != nil {
			return false, err
		}
	}
}

// dumpReader follows the answer to one dump request, a datagram at a time.
type dumpReader struct {
	// seq is the request's sequence number; messages with another one
	// are not part of the answer.
	seq uint32
	// answer is the message type of the answer's parts; fn is called
	// with the family and the attributes of each.
	answer uint16
	fn     func(Family, []byte) error
	// decodeErr is the first message that did not decode, reported at the
	// end of the answer; interrupted tells whether the kernel flagged a
	// part as inconsistent.
	decodeErr   error
	interrupted bool
}

// datagram reads one datagram of the answer. done is true when the
// datagram ends the answer (DONE or an error message), and err is then the
// dump's outcome. Before the end, err is a datagram that does not split
// into messages, after which the rest of the answer cannot be found.
func (r *dumpReader) datagram(b []byte) (done bool, err error) {
	for len(b) > 0 {
		m, rest, err := nextMessage(b)
		if err != nil {
			return false, err
		}
		b = rest
		if m.Seq != r.seq {
			continue // not an answer to this request
		}
		if m.Flags&nlwire.FlagDumpInterrupted != 0 {
			r.interrupted = true
		}
		switch m.Type {
		case nlwire.TypeDone:
			switch {
			case r.decodeErr != nil:
				return true, r.decodeErr
			case r.interrupted:
				return true, errInterrupted
			}
			return true, doneError(m.Payload)
		case nlwire.TypeError:
			// A dump that starts returns no error message; this one
			// ends the answer.
			return true, errorMessage(m.Payload)
		case subsysNftables<<8 | r.answer:
			if len(m.Payload) < nlwire.NfgenLen {
				r.decodeErr = cmpErr(r.decodeErr, fmt.Errorf("%w: nf_tables message of %d bytes", errTruncated, len(m.Payload)))
				continue
			}
			if err := r.fn(Family(m.Payload[0]), m.Payload[nlwire.NfgenLen:]); err != nil {
				r.decodeErr = cmpErr(r.decodeErr, err)
			}
		default:
			r.decodeErr = cmpErr(r.decodeErr, fmt.Errorf("%w: type %#x", errUnexpected, m.Type))
		}
	}
	return false, nil
}

// cmpErr keeps the first of two errors.
func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// errorMessage returns the error an NLMSG_ERROR payload carries: a negative
// errno followed by the request's header.
func errorMessage(p []byte) error {
	if len(p) < 4 {
		return fmt.Errorf("%w: error message of %d bytes", errTruncated, len(p))
	}
	if code := int32(binary.NativeEndian.Uint32(p)); code != 0 {
		return fmt.Errorf("nf_tables dump: %w", syscall.Errno(-code))
	}
	return fmt.Errorf("%w: an acknowledgement instead of a dump", errUnexpected)
}

// doneError returns the error an NLMSG_DONE payload carries, nil for 0.
func doneError(p []byte) error {
	if len(p) >= 4 {
		if code := int32(binary.NativeEndian.Uint32(p)); code != 0 {
			return fmt.Errorf("nf_tables dump: %w", syscall.Errno(-code))
		}
	}
	return nil
}

// recv reads one datagram of s into c.buf, which it grows when the
// datagram does not fit, and returns it. It waits for the socket's read
// deadline at most.
func (c *Conn) recv(s *socket) ([]byte, error) {
	var n int
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		// Peek at the size first: netlink drops what does not fit.
		n, errno = recvfrom(fd, c.buf, unix.MSG_PEEK|unix.MSG_TRUNC)
		if errno == unix.EAGAIN {
			return false
		}
		if errno != 0 {
			return true
		}
		if n > len(c.buf) {
			c.buf = make([]byte, n)
		}
		n, errno = recvfrom(fd, c.buf, 0)
		return errno != unix.EAGAIN
	})
	switch {
	case err != nil:
		return nil, err
	case errno != 0:
		return nil, errno
	}
	return c.buf[:n], nil
}

func recvfrom(fd uintptr, b []byte, flags int) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags), 0, 0)
	return int(n), errno
}
