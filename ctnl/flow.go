package ctnl

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Netlink and nfnetlink values of ctnetlink.
const (
	subsysCT    = 1 // NFNL_SUBSYS_CTNETLINK
	msgCTNew    = 0 // IPCTNL_MSG_CT_NEW
	msgCTDelete = 2 // IPCTNL_MSG_CT_DELETE: DESTROY events
	afINET      = 2
	afINET6     = 10
)

// Conntrack attribute types (enum ctattr_type and its nested enums).
const (
	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaStatus        = 3
	ctaProtoInfo     = 4
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

	ctaProtoNum       = 1
	ctaProtoSrcPort   = 2
	ctaProtoDstPort   = 3
	ctaProtoICMPID    = 4
	ctaProtoICMPType  = 5
	ctaProtoICMPCode  = 6
	ctaProtoICMPv6ID  = 7
	ctaProtoICMPv6Typ = 8
	ctaProtoICMPv6Cod = 9

	ctaProtoInfoTCP      = 1
	ctaProtoInfoTCPState = 1

	ctaCountersPackets   = 1
	ctaCountersBytes     = 2
	ctaCounters32Packets = 3
	ctaCounters32Bytes   = 4

	ctaTimestampStart = 1
	ctaTimestampStop  = 2
)

// Tuple is one direction of a connection.
type Tuple struct {
	Src, Dst     netip.Addr
	Proto        uint8
	SPort, DPort uint16 // 0 for protocols without ports
	// ICMPID, ICMPType and ICMPCode identify ICMP and ICMPv6 flows, which
	// have no ports.
	ICMPID             uint16
	ICMPType, ICMPCode uint8
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
	// ID is the kernel's id of the entry: a hash of its address and
	// original tuple, stable for the entry's life but not unique over
	// time.
	ID uint32
	// TCPState is the state of a TCP flow as the kernel numbers it (enum
	// tcp_conntrack: 3 is ESTABLISHED, 7 TIME_WAIT), 0 for other
	// protocols. Table dumps carry it; DESTROY events do not.
	TCPState uint8
	// Counters are filled when nf_conntrack_acct is on.
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
	// Start and Stop are nanoseconds since the epoch, filled when
	// nf_conntrack_timestamp is on; Stop only in DESTROY events.
	Start, Stop int64
}

// attrError describes the malformed attribute at the start of b. It is
// kept out of the loops so that they stay small.
//
//go:noinline
func attrError(b []byte) error {
	return fmt.Errorf("%w: %s", errAttribute, nlwire.AttrProblem(b))
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
	if len(payload) < nlwire.NfgenLen {
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
	for b := payload[nlwire.NfgenLen:]; len(b) > 0; {
		typ, val, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		var err error
		switch typ {
		case ctaTupleOrig:
			haveOrig = true
			err = decodeTuple(val, &f.Orig, &f.Zone)
		case ctaTupleReply:
			var zone uint16
			err = decodeTuple(val, &f.Reply, &zone)
		case ctaStatus:
			f.Status, err = be32(val)
		case ctaMark:
			f.Mark, err = be32(val)
		case ctaID:
			f.ID, err = be32(val)
		case ctaZone:
			f.Zone, err = be16(val)
		case ctaCountersOrig:
			err = decodeCounters(val, &f.OrigPackets, &f.OrigBytes)
		case ctaCountersReply:
			err = decodeCounters(val, &f.ReplyPackets, &f.ReplyBytes)
		case ctaTimestamp:
			err = decodeTimestamp(val, f)
		case ctaProtoInfo:
			err = decodeProtoInfo(val, f)
		}
		if err != nil {
			return fmt.Errorf("attribute %d: %w", typ, err)
		}
	}
	if !haveOrig {
		return errNoTuple
	}
	return nil
}

// decodeTuple decodes a CTA_TUPLE_ORIG or CTA_TUPLE_REPLY: addresses, ports
// and protocol in one pass over the nested attributes.
func decodeTuple(b []byte, t *Tuple, zone *uint16) error {
	for len(b) > 0 {
		typ, val, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		switch typ {
		case ctaTupleIP:
			for len(val) > 0 {
				typ, v, rest, ok := nlwire.NextAttr(val)
				if !ok {
					return attrError(val)
				}
				val = rest
				if typ < ctaIPv4Src || typ > ctaIPv6Dst {
					continue
				}
				want := 4
				if typ >= ctaIPv6Src {
					want = 16
				}
				if len(v) != want {
					return errAddrLength
				}
				addr, _ := netip.AddrFromSlice(v)
				if typ == ctaIPv4Src || typ == ctaIPv6Src {
					t.Src = addr
				} else {
					t.Dst = addr
				}
			}
		case ctaTupleProto:
			for len(val) > 0 {
				typ, v, rest, ok := nlwire.NextAttr(val)
				if !ok {
					return attrError(val)
				}
				val = rest
				var err error
				switch typ {
				case ctaProtoNum:
					if len(v) < 1 {
						return errAttribute
					}
					t.Proto = v[0]
				case ctaProtoSrcPort:
					t.SPort, err = be16(v)
				case ctaProtoDstPort:
					t.DPort, err = be16(v)
				case ctaProtoICMPID, ctaProtoICMPv6ID:
					t.ICMPID, err = be16(v)
				case ctaProtoICMPType, ctaProtoICMPv6Typ:
					if len(v) < 1 {
						return errAttribute
					}
					t.ICMPType = v[0]
				case ctaProtoICMPCode, ctaProtoICMPv6Cod:
					if len(v) < 1 {
						return errAttribute
					}
					t.ICMPCode = v[0]
				}
				if err != nil {
					return err
				}
			}
		case ctaTupleZone:
			var err error
			if *zone, err = be16(val); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeCounters(b []byte, pkts, bytes *uint64) error {
	for len(b) > 0 {
		typ, val, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		var err error
		var v uint32
		switch typ {
		case ctaCountersPackets:
			*pkts, err = be64(val)
		case ctaCountersBytes:
			*bytes, err = be64(val)
		case ctaCounters32Packets:
			v, err = be32(val)
			*pkts = uint64(v)
		case ctaCounters32Bytes:
			v, err = be32(val)
			*bytes = uint64(v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeProtoInfo takes the TCP state out of a CTA_PROTOINFO.
func decodeProtoInfo(b []byte, f *Flow) error {
	for len(b) > 0 {
		typ, val, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		if typ != ctaProtoInfoTCP {
			continue
		}
		for len(val) > 0 {
			typ, v, rest, ok := nlwire.NextAttr(val)
			if !ok {
				return attrError(val)
			}
			val = rest
			if typ == ctaProtoInfoTCPState {
				if len(v) < 1 {
					return errAttribute
				}
				f.TCPState = v[0]
			}
		}
	}
	return nil
}

func decodeTimestamp(b []byte, f *Flow) error {
	for len(b) > 0 {
		typ, val, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		var err error
		var v uint64
		switch typ {
		case ctaTimestampStart:
			v, err = be64(val)
			f.Start = int64(v)
		case ctaTimestampStop:
			v, err = be64(val)
			f.Stop = int64(v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// nextMessage splits the first netlink message off b. It returns the rest of
// the buffer.
func nextMessage(b []byte) (nlwire.Message, []byte, error) {
	m, rest, ok := nlwire.NextMessage(b)
	if !ok {
		return m, nil, fmt.Errorf("%w: %s", errTruncated, nlwire.Problem(b))
	}
	return m, rest, nil
}
