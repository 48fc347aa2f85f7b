package ctnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Netlink and nfnetlink framing.
const (
	nlmsgHdrLen  = 16
	nfgenHdrLen  = 4
	nlaHdrLen    = 4
	nlaTypeMask  = 0x3fff // drops NLA_F_NESTED and NLA_F_NET_BYTEORDER
	subsysCT     = 1      // NFNL_SUBSYS_CTNETLINK
	msgCTNew     = 0      // IPCTNL_MSG_CT_NEW
	msgCTDelete  = 2      // IPCTNL_MSG_CT_DELETE: DESTROY events
	afINET       = 2
	afINET6      = 10
	nlmsgError   = 2
	nlmsgDone    = 3
	nlmsgOverrun = 4
)

// Conntrack attribute types (enum ctattr_type and its nested enums).
const (
	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaStatus        = 3
	ctaMark          = 8
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12
	ctaZone          = 18
	ctaTimestamp     = 20

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaTupleZone  = 3

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3

	ctaCountersPackets   = 1
	ctaCountersBytes     = 2
	ctaCounters32Packets = 3
	ctaCounters32Bytes   = 4

	ctaTimestampStart = 1
	ctaTimestampStop  = 2
)

var (
	errTruncated  = errors.New("truncated netlink message")
	errAttribute  = errors.New("malformed conntrack attribute")
	errNoTuple    = errors.New("conntrack event without an original tuple")
	errNotCT      = errors.New("not a conntrack message")
	errBadFamily  = errors.New("unsupported address family")
	errAddrLength = errors.New("address of the wrong length")
)

// Tuple is one direction of a connection.
type Tuple struct {
	Src, Dst     netip.Addr
	Proto        uint8
	SPort, DPort uint16 // 0 for protocols without ports
}

// Flow is a conntrack entry as a DESTROY event (or a table dump) reports it.
type Flow struct {
	// Family is 4 or 6.
	Family uint8
	// Orig is the tuple of the original direction, Reply of the reply
	// direction; they differ when NAT applies.
	Orig, Reply Tuple
	// Zone is the conntrack zone, 0 when the kernel sends none.
	Zone uint16
	// Mark is the connection mark, 0 when the kernel sends none.
	Mark   uint32
	Status uint32
	ID     uint32
	// Counters are filled when nf_conntrack_acct is on.
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
	// Start and Stop are nanoseconds since the epoch, filled when
	// nf_conntrack_timestamp is on; Stop only in DESTROY events.
	Start, Stop int64
}

// attrs iterates over netlink attributes without allocating.
type attrs struct {
	b   []byte
	typ uint16
	val []byte
	err error
}

func (a *attrs) next() bool {
	b := a.b
	if len(b) < nlaHdrLen {
		if len(b) != 0 && a.err == nil {
			a.fail(len(b), len(b))
		}
		return false
	}
	l := int(binary.NativeEndian.Uint16(b))
	if l < nlaHdrLen || l > len(b) {
		a.fail(l, len(b))
		return false
	}
	a.typ = binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
	a.val = b[nlaHdrLen:l]
	a.b = b[min((l+3)&^3, len(b)):]
	return true
}

// fail records a malformed attribute and stops the iteration. It is kept
// out of next so that next stays small enough to inline.
//
//go:noinline
func (a *attrs) fail(l, left int) {
	a.err = fmt.Errorf("%w: length %d with %d bytes left", errAttribute, l, left)
	a.b = nil
}

func be16(b []byte) (uint16, error) {
	if len(b) < 2 {
		return 0, errAttribute
	}
	return binary.BigEndian.Uint16(b), nil
}

func be32(b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, errAttribute
	}
	return binary.BigEndian.Uint32(b), nil
}

func be64(b []byte) (uint64, error) {
	if len(b) < 8 {
		return 0, errAttribute
	}
	return binary.BigEndian.Uint64(b), nil
}

// decodeFlow decodes the payload of a ctnetlink message (what follows the
// netlink header) into f. It does not allocate.
func decodeFlow(payload []byte, f *Flow) error {
	*f = Flow{}
	if len(payload) < nfgenHdrLen {
		return errTruncated
	}
	switch payload[0] {
	case afINET:
		f.Family = 4
	case afINET6:
		f.Family = 6
	default:
		return fmt.Errorf("%w %d", errBadFamily, payload[0])
	}
	var haveOrig bool
	a := attrs{b: payload[nfgenHdrLen:]}
	for a.next() {
		var err error
		switch a.typ {
		case ctaTupleOrig:
			haveOrig = true
			err = decodeTuple(a.val, &f.Orig, &f.Zone)
		case ctaTupleReply:
			var zone uint16
			err = decodeTuple(a.val, &f.Reply, &zone)
		case ctaStatus:
			f.Status, err = be32(a.val)
		case ctaMark:
			f.Mark, err = be32(a.val)
		case ctaID:
			f.ID, err = be32(a.val)
		case ctaZone:
			f.Zone, err = be16(a.val)
		case ctaCountersOrig:
			err = decodeCounters(a.val, &f.OrigPackets, &f.OrigBytes)
		case ctaCountersReply:
			err = decodeCounters(a.val, &f.ReplyPackets, &f.ReplyBytes)
		case ctaTimestamp:
			err = decodeTimestamp(a.val, f)
		}
		if err != nil {
			return fmt.Errorf("attribute %d: %w", a.typ, err)
		}
	}
	if a.err != nil {
		return a.err
	}
	if !haveOrig {
		return errNoTuple
	}
	return nil
}

func decodeTuple(b []byte, t *Tuple, zone *uint16) error {
	a := attrs{b: b}
	for a.next() {
		var err error
		switch a.typ {
		case ctaTupleIP:
			err = decodeIP(a.val, t)
		case ctaTupleProto:
			err = decodeProto(a.val, t)
		case ctaTupleZone:
			*zone, err = be16(a.val)
		}
		if err != nil {
			return err
		}
	}
	return a.err
}

func decodeIP(b []byte, t *Tuple) error {
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case ctaIPv4Src, ctaIPv4Dst:
			if len(a.val) != 4 {
				return errAddrLength
			}
			addr := netip.AddrFrom4([4]byte(a.val))
			if a.typ == ctaIPv4Src {
				t.Src = addr
			} else {
				t.Dst = addr
			}
		case ctaIPv6Src, ctaIPv6Dst:
			if len(a.val) != 16 {
				return errAddrLength
			}
			addr := netip.AddrFrom16([16]byte(a.val))
			if a.typ == ctaIPv6Src {
				t.Src = addr
			} else {
				t.Dst = addr
			}
		}
	}
	return a.err
}

func decodeProto(b []byte, t *Tuple) error {
	a := attrs{b: b}
	for a.next() {
		var err error
		switch a.typ {
		case ctaProtoNum:
			if len(a.val) < 1 {
				return errAttribute
			}
			t.Proto = a.val[0]
		case ctaProtoSrcPort:
			t.SPort, err = be16(a.val)
		case ctaProtoDstPort:
			t.DPort, err = be16(a.val)
		}
		if err != nil {
			return err
		}
	}
	return a.err
}

func decodeCounters(b []byte, pkts, bytes *uint64) error {
	a := attrs{b: b}
	for a.next() {
		var err error
		var v uint32
		switch a.typ {
		case ctaCountersPackets:
			*pkts, err = be64(a.val)
		case ctaCountersBytes:
			*bytes, err = be64(a.val)
		case ctaCounters32Packets:
			v, err = be32(a.val)
			*pkts = uint64(v)
		case ctaCounters32Bytes:
			v, err = be32(a.val)
			*bytes = uint64(v)
		}
		if err != nil {
			return err
		}
	}
	return a.err
}

func decodeTimestamp(b []byte, f *Flow) error {
	a := attrs{b: b}
	for a.next() {
		var err error
		var v uint64
		switch a.typ {
		case ctaTimestampStart:
			v, err = be64(a.val)
			f.Start = int64(v)
		case ctaTimestampStop:
			v, err = be64(a.val)
			f.Stop = int64(v)
		}
		if err != nil {
			return err
		}
	}
	return a.err
}

// message is one netlink message inside a receive buffer.
type message struct {
	typ     uint16
	flags   uint16
	payload []byte
}

// nextMessage splits the first netlink message off b. It returns the rest of
// the buffer.
func nextMessage(b []byte) (message, []byte, error) {
	if len(b) < nlmsgHdrLen {
		return message{}, nil, errTruncated
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < nlmsgHdrLen || l > len(b) {
		return message{}, nil, fmt.Errorf("%w: length %d with %d bytes left", errTruncated, l, len(b))
	}
	m := message{
		typ:     binary.NativeEndian.Uint16(b[4:]),
		flags:   binary.NativeEndian.Uint16(b[6:]),
		payload: b[nlmsgHdrLen:l],
	}
	aligned := (l + 3) &^ 3
	if aligned > len(b) {
		aligned = len(b)
	}
	return m, b[aligned:], nil
}
