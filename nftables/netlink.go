package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Netlink and nfnetlink framing.
const (
	nlmsgHdrLen = 16
	nfgenHdrLen = 4
	nlaHdrLen   = 4
	nlaTypeMask = 0x3fff // drops NLA_F_NESTED and NLA_F_NET_BYTEORDER

	nlmsgError = 2 // NLMSG_ERROR
	nlmsgDone  = 3 // NLMSG_DONE

	flagDumpInterrupted = 0x10 // NLM_F_DUMP_INTR

	subsysNftables = 10 // NFNL_SUBSYS_NFTABLES
)

// Message types of nf_tables (enum nf_tables_msg_types). The reset variants
// (NFT_MSG_GETOBJ_RESET, NFT_MSG_GETRULE_RESET) are deliberately absent.
const (
	msgNewRule = 6  // NFT_MSG_NEWRULE: a rule, as dumps answer
	msgGetRule = 7  // NFT_MSG_GETRULE
	msgNewObj  = 18 // NFT_MSG_NEWOBJ: an object, as dumps answer
	msgGetObj  = 19 // NFT_MSG_GETOBJ
)

var (
	errTruncated  = errors.New("truncated netlink message")
	errAttribute  = errors.New("malformed nf_tables attribute")
	errIncomplete = errors.New("nf_tables message lacks a required attribute")
)

// message is one netlink message of a datagram.
type message struct {
	typ     uint16
	flags   uint16
	seq     uint32
	payload []byte
}

// nextMessage splits the first netlink message off b. It returns the rest of
// the buffer.
func nextMessage(b []byte) (message, []byte, error) {
	if len(b) < nlmsgHdrLen {
		return message{}, nil, fmt.Errorf("%w: %d bytes left", errTruncated, len(b))
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < nlmsgHdrLen || l > len(b) {
		return message{}, nil, fmt.Errorf("%w: length %d with %d bytes left", errTruncated, l, len(b))
	}
	m := message{
		typ:     binary.NativeEndian.Uint16(b[4:]),
		flags:   binary.NativeEndian.Uint16(b[6:]),
		seq:     binary.NativeEndian.Uint32(b[8:]),
		payload: b[nlmsgHdrLen:l],
	}
	return m, b[min((l+3)&^3, len(b)):], nil
}

// nextAttr splits the first netlink attribute off b: its type, its value and
// the rest of b. ok is false when b does not start with a whole attribute.
func nextAttr(b []byte) (typ uint16, val, rest []byte, ok bool) {
	if len(b) < nlaHdrLen {
		return 0, nil, nil, false
	}
	l := int(binary.NativeEndian.Uint16(b))
	if l < nlaHdrLen || l > len(b) {
		return 0, nil, nil, false
	}
	return binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask, b[nlaHdrLen:l], b[min((l+3)&^3, len(b)):], true
}

// attrError describes the malformed attribute at the start of b.
func attrError(b []byte) error {
	l := 0
	if len(b) >= 2 {
		l = int(binary.NativeEndian.Uint16(b))
	}
	return fmt.Errorf("%w: length %d with %d bytes left", errAttribute, l, len(b))
}

func be32(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("%w: %d bytes for a 32-bit value", errAttribute, len(b))
	}
	return binary.BigEndian.Uint32(b), nil
}

func be64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d bytes for a 64-bit value", errAttribute, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// cstring returns b up to its first NUL: the kernel sends names
// NUL-terminated.
func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// interner hands out one string per distinct name, so that the table and
// chain names shared by thousands of objects are allocated once per dump.
type interner map[string]string

func (in interner) get(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}
