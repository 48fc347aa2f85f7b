package nlwire

import (
	"encoding/binary"
	"fmt"
)

// Netlink framing.
const (
	// HeaderLen is the length of a netlink message header (nlmsghdr).
	HeaderLen = 16
	// NfgenLen is the length of the nfnetlink header (nfgenmsg) that
	// starts the payload of every netfilter message.
	NfgenLen = 4
	// AttrHeaderLen is the length of an attribute header (nlattr).
	AttrHeaderLen = 4

	// TypeError (NLMSG_ERROR) and TypeDone (NLMSG_DONE) are the message
	// types that end an answer.
	TypeError = 2
	TypeDone  = 3

	// FlagDumpInterrupted (NLM_F_DUMP_INTR) marks a dump part the kernel
	// knows to be inconsistent.
	FlagDumpInterrupted = 0x10

	attrTypeMask = 0x3fff // drops NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// Message is one netlink message of a datagram; Payload points into the
// datagram.
type Message struct {
	Type    uint16
	Flags   uint16
	Seq     uint32
	Payload []byte
}

// NextMessage splits the first netlink message off b and returns it with
// the rest of b. ok is false when b does not start with a whole message;
// Problem says why.
func NextMessage(b []byte) (m Message, rest []byte, ok bool) {
	if len(b) < HeaderLen {
		return Message{}, nil, false
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < HeaderLen || l > len(b) {
		return Message{}, nil, false
	}
	m = Message{
		Type:    binary.NativeEndian.Uint16(b[4:]),
		Flags:   binary.NativeEndian.Uint16(b[6:]),
		Seq:     binary.NativeEndian.Uint32(b[8:]),
		Payload: b[HeaderLen:l],
	}
	return m, b[min((l+3)&^3, len(b)):], true
}

// NextAttr splits the first netlink attribute off b: its type (without
// the nested and byte-order flags), its value and the rest of b. ok is
// false when b does not start with a whole attribute; AttrProblem says why.
// It is small enough to be inlined in every decoding loop.
func NextAttr(b []byte) (typ uint16, val, rest []byte, ok bool) {
	if len(b) < AttrHeaderLen {
		return 0, nil, nil, false
	}
	l := int(binary.NativeEndian.Uint16(b))
	if l < AttrHeaderLen || l > len(b) {
		return 0, nil, nil, false
	}
	return binary.NativeEndian.Uint16(b[2:]) & attrTypeMask, b[AttrHeaderLen:l], b[min((l+3)&^3, len(b)):], true
}

// Problem describes why b does not start with a whole message, for an
// error of the caller's.
//
//go:noinline
func Problem(b []byte) string {
	if len(b) < HeaderLen {
		return fmt.Sprintf("%d bytes left", len(b))
	}
	return fmt.Sprintf("length %d with %d bytes left", binary.NativeEndian.Uint32(b), len(b))
}

// AttrProblem describes why b does not start with a whole attribute, for
// an error of the caller's. It is kept out of the decoding loops so that
// they stay small.
//
//go:noinline
func AttrProblem(b []byte) string {
	l := 0
	if len(b) >= 2 {
		l = int(binary.NativeEndian.Uint16(b))
	}
	return fmt.Sprintf("length %d with %d bytes left", l, len(b))
}

// CString returns b up to its first NUL: the kernel sends names
// NUL-terminated.
func CString(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
