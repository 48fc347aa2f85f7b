package nflog

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Netlink and nfnetlink_log values (linux/netfilter/nfnetlink_log.h).
const (
	subsysULOG   = 4 // NFNL_SUBSYS_ULOG
	msgPacket    = 0 // NFULNL_MSG_PACKET
	msgConfig    = 1 // NFULNL_MSG_CONFIG
	typePacket   = subsysULOG<<8 | msgPacket
	typeConfig   = subsysULOG<<8 | msgConfig
	afINET       = 2
	afINET6      = 10
	ethIPv4      = 0x0800
	ethIPv6      = 0x86dd
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoSCTP    = 132
	protoUDPLite = 136
)

// Attributes of a packet message (enum nfulnl_attr_type).
const (
	attrPacketHdr   = 1  // NFULA_PACKET_HDR: hw_protocol be16, hook u8, pad
	attrMark        = 2  // NFULA_MARK: be32
	attrInDev       = 4  // NFULA_IFINDEX_INDEV: be32
	attrOutDev      = 5  // NFULA_IFINDEX_OUTDEV: be32
	attrPayload     = 9  // NFULA_PAYLOAD: the packet from its network header
	attrPrefix      = 10 // NFULA_PREFIX: NUL-terminated
	attrSeq         = 12 // NFULA_SEQ: be32, per group
	attrSeqGlobal   = 13 // NFULA_SEQ_GLOBAL: be32, per namespace
	packetHdrLength = 4
	// decoded has a bit for each attribute Decode reads.
	decoded = 1<<attrPacketHdr | 1<<attrMark | 1<<attrInDev | 1<<attrOutDev | 1<<attrPayload |
		1<<attrPrefix | 1<<attrSeq | 1<<attrSeqGlobal
)

// Packet is one logged packet. Prefix points into the datagram it was
// decoded from and is valid only until the function given to Run returns;
// copy it to keep it.
type Packet struct {
	// Group is the nflog group the rule logged to.
	Group uint16
	// Family is the packet's netfilter family (nfgen_family): 2 for IPv4,
	// 10 for IPv6, 7 for bridge...
	Family uint8
	// Hook is the netfilter hook: 0 prerouting, 1 input, 2 forward, 3
	// output, 4 postrouting.
	Hook uint8
	// HWProtocol is the packet's link-layer protocol (an EtherType).
	HWProtocol uint16
	// Prefix is the rule's log prefix as the kernel sends it, without its
	// terminating NUL (a trailing space, if the rule has one, is kept).
	Prefix []byte
	// Mark is the packet's mark.
	Mark uint32
	// InDev and OutDev are the interface indexes the packet came in and
	// goes out by; 0 when there is none.
	InDev, OutDev uint32
	// Seq is the group's sequence number, HasSeq whether the message had
	// one; SeqGlobal and HasSeqGlobal the namespace's.
	Seq, SeqGlobal       uint32
	HasSeq, HasSeqGlobal bool

	// Length is the IP total length (for IPv6, the payload length plus the
	// 40 bytes of the fixed header); 0 when no IP header was copied.
	Length uint32
	// Proto is the transport protocol (after IPv6 extension headers).
	Proto uint8
	// Src and Dst are the IP addresses; invalid when no IP header was
	// copied.
	Src, Dst netip.Addr
	// SPort and DPort are the ports of TCP, UDP, UDP-Lite, SCTP and DCCP
	// packets that are not later fragments; 0 otherwise.
	SPort, DPort uint16
}

// Decode decodes the packet message m (without its netlink header) into p,
// which it overwrites. It does not allocate.
func Decode(typ uint16, payload []byte, p *Packet) error {
	if typ != typePacket {
		*p = Packet{}
		return fmt.Errorf("%w: type %#x", errNotPacket, typ)
	}
	var lo layout
	return lo.walk(payload, p)
}

// maxLayout is the most attributes a layout remembers.
const maxLayout = 16

// layout is where the attributes of the last packet message decoded by
// walking over them lie. The messages of one rule come in runs with the
// same attributes, of the same lengths but for the payload, which the
// kernel puts last: a message whose attribute headers are the remembered
// ones at the same offsets, and whose last attribute is of the same type
// and ends the message, has the attributes the walk would find, where the
// layout says. Its fields are read from there, with loads that do not
// wait for one another, where the walk is a chain of dependent ones.
type layout struct {
	// n is the number of attributes, 0 when no layout is remembered.
	n int
	// off and hdr are the offset in the payload of each attribute but the
	// last, and its header (length and type) as the kernel wrote it.
	off [maxLayout]uint16
	hdr [maxLayout]uint32
	// last is the offset of the last attribute, the payload, and lastType
	// its type, as written.
	last     int
	lastType uint16
	// The offsets of the values Decode reads, 0 when the message has no
	// such attribute (a value is never at 0, after the nfgen header), and
	// the length of the prefix's. payload is whether the last attribute
	// is the payload, which a remembered layout's always is.
	pktHdr, mark, inDev, outDev, seq, seqGlobal, prefix, prefixLen int
	payload                                                        bool
}

// decode decodes the packet message payload into p, which it overwrites,
// by the layout when it fits and by walking over the attributes, and
// remembering their layout, when it does not.
func (lo *layout) decode(payload []byte, p *Packet) error {
	n := lo.n
	if n == 0 || lo.last+nlwire.AttrHeaderLen > len(payload) || n > maxLayout {
		return lo.walk(payload, p)
	}
	for i := range n - 1 {
		o := int(lo.off[i])
		if binary.NativeEndian.Uint32(payload[o:o+4]) != lo.hdr[i] {
			return lo.walk(payload, p)
		}
	}
	// The last attribute must end the message as the walk would see it:
	// whole, and followed by nothing but its padding.
	o := lo.last
	l := int(binary.NativeEndian.Uint16(payload[o:]))
	if binary.NativeEndian.Uint16(payload[o+2:]) != lo.lastType || l < nlwire.AttrHeaderLen ||
		o+l > len(payload) || o+(l+3)&^3 < len(payload) {
		return lo.walk(payload, p)
	}
	*p = Packet{Family: payload[0], Group: binary.BigEndian.Uint16(payload[2:])}
	if o := lo.pktHdr; o != 0 {
		p.HWProtocol = binary.BigEndian.Uint16(payload[o:])
		p.Hook = payload[o+2]
	}
	if o := lo.prefix; o != 0 {
		p.Prefix = nlwire.CString(payload[o : o+lo.prefixLen])
	}
	if o := lo.inDev; o != 0 {
		p.InDev = binary.BigEndian.Uint32(payload[o:])
	}
	if o := lo.outDev; o != 0 {
		p.OutDev = binary.BigEndian.Uint32(payload[o:])
	}
	if o := lo.mark; o != 0 {
		p.Mark = binary.BigEndian.Uint32(payload[o:])
	}
	if o := lo.seq; o != 0 {
		p.Seq, p.HasSeq = binary.BigEndian.Uint32(payload[o:]), true
	}
	if o := lo.seqGlobal; o != 0 {
		p.SeqGlobal, p.HasSeqGlobal = binary.BigEndian.Uint32(payload[o:]), true
	}
	if l > nlwire.AttrHeaderLen {
		p.decodeIP(payload[o+nlwire.AttrHeaderLen : o+l])
	}
	return nil
}

// walk decodes the packet message payload into p, which it overwrites, by
// walking over its attributes, and remembers their layout in lo; lo
// remembers none when the message does not decode or has more than
// maxLayout attributes.
func (lo *layout) walk(payload []byte, p *Packet) error {
	*p = Packet{}
	*lo = layout{}
	if len(payload) < nlwire.NfgenLen {
		return fmt.Errorf("%w: %d bytes", errTruncated, len(payload))
	}
	p.Family = payload[0]
	p.Group = binary.BigEndian.Uint16(payload[2:])
	b := payload[nlwire.NfgenLen:]
	var ip []byte
	var next layout
	for len(b) > 0 {
		at := len(payload) - len(b)
		t, v, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return fmt.Errorf("%w: %s", errAttribute, nlwire.AttrProblem(b))
		}
		if next.n < maxLayout {
			next.off[next.n] = uint16(at)
			next.hdr[next.n] = binary.NativeEndian.Uint32(b)
		}
		next.n++
		next.last, next.lastType, next.payload = at, binary.NativeEndian.Uint16(b[2:]), false
		b = rest
		if t >= 16 || decoded&(1<<t) == 0 {
			// Most attributes of a message (hardware address and header,
			// timestamp) are not read: one test skips each.
			continue
		}
		val := at + nlwire.AttrHeaderLen
		switch t {
		case attrPacketHdr:
			if len(v) < packetHdrLength {
				return fmt.Errorf("%w: packet header of %d bytes", errAttribute, len(v))
			}
			p.HWProtocol = binary.BigEndian.Uint16(v)
			p.Hook = v[2]
			next.pktHdr = val
		case attrMark, attrInDev, attrOutDev, attrSeq, attrSeqGlobal:
			if len(v) < 4 {
				return fmt.Errorf("%w: attribute %d of %d bytes", errAttribute, t, len(v))
			}
			n := binary.BigEndian.Uint32(v)
			switch t {
			case attrMark:
				p.Mark, next.mark = n, val
			case attrInDev:
				p.InDev, next.inDev = n, val
			case attrOutDev:
				p.OutDev, next.outDev = n, val
			case attrSeq:
				p.Seq, p.HasSeq, next.seq = n, true, val
			default:
				p.SeqGlobal, p.HasSeqGlobal, next.seqGlobal = n, true, val
			}
		case attrPrefix:
			p.Prefix, next.prefix, next.prefixLen = nlwire.CString(v), val, len(v)
		case attrPayload:
			ip, next.payload = v, true
		}
	}
	if len(ip) > 0 {
		p.decodeIP(ip)
	}
	// Only a message whose payload is its last attribute, as the kernel
	// builds them, has its layout remembered: the payload is the one
	// attribute whose length may change from one message to the next.
	// The offsets, all before the last attribute's, must fit their
	// uint16s.
	if next.n <= maxLayout && next.payload && next.last <= 0xffff {
		*lo = next
	}
	return nil
}

// decodeIP reads what the copied headers hold. A header cut short by the
// copy range leaves the fields it would have set as they are.
func (p *Packet) decodeIP(b []byte) {
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 {
			return
		}
		p.Length = uint32(binary.BigEndian.Uint16(b[2:]))
		p.Proto = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 { // a later fragment
			return
		}
		p.ports(b, ihl)
	case 6:
		if len(b) < 40 {
			return
		}
		p.Length = 40 + uint32(binary.BigEndian.Uint16(b[4:]))
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, off := b[6], 40
		// Extension headers, a bounded number of them.
		for range 8 {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(b) < off+2 {
					p.Proto = next
					return
				}
				next, off = b[off], off+(int(b[off+1])+1)*8
				continue
			case 51: // authentication header
				if len(b) < off+2 {
					p.Proto = next
					return
				}
				next, off = b[off], off+(int(b[off+1])+2)*4
				continue
			case 44: // fragment
				if len(b) < off+8 {
					p.Proto = next
					return
				}
				if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
					p.Proto = b[off]
					return
				}
				next, off = b[off], off+8
				continue
			}
			break
		}
		p.Proto = next
		p.ports(b, off)
	}
}

// ports reads the ports of a transport header at b[off:].
func (p *Packet) ports(b []byte, off int) {
	switch p.Proto {
	case protoTCP, protoUDP, protoUDPLite, protoSCTP, protoDCCP:
		if off >= 0 && len(b) >= off+4 {
			p.SPort = binary.BigEndian.Uint16(b[off:])
			p.DPort = binary.BigEndian.Uint16(b[off+2:])
		}
	}
}
