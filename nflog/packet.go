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
	*p = Packet{}
	if typ != typePacket {
		return fmt.Errorf("%w: type %#x", errNotPacket, typ)
	}
	if len(payload) < nlwire.NfgenLen {
		return fmt.Errorf("%w: %d bytes", errTruncated, len(payload))
	}
	p.Family = payload[0]
	p.Group = binary.BigEndian.Uint16(payload[2:])
	b := payload[nlwire.NfgenLen:]
	var ip []byte
	for len(b) > 0 {
		t, v, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return fmt.Errorf("%w: %s", errAttribute, nlwire.AttrProblem(b))
		}
		b = rest
		if t >= 16 || decoded&(1<<t) == 0 {
			// Most attributes of a message (hardware address and header,
			// timestamp) are not read: one test skips each.
			continue
		}
		switch t {
		case attrPacketHdr:
			if len(v) < packetHdrLength {
				return fmt.Errorf("%w: packet header of %d bytes", errAttribute, len(v))
			}
			p.HWProtocol = binary.BigEndian.Uint16(v)
			p.Hook = v[2]
		case attrMark, attrInDev, attrOutDev, attrSeq, attrSeqGlobal:
			if len(v) < 4 {
				return fmt.Errorf("%w: attribute %d of %d bytes", errAttribute, t, len(v))
			}
			n := binary.BigEndian.Uint32(v)
			switch t {
			case attrMark:
				p.Mark = n
			case attrInDev:
				p.InDev = n
			case attrOutDev:
				p.OutDev = n
			case attrSeq:
				p.Seq, p.HasSeq = n, true
			default:
				p.SeqGlobal, p.HasSeqGlobal = n, true
			}
		case attrPrefix:
			p.Prefix = nlwire.CString(v)
		case attrPayload:
			ip = v
		}
	}
	if len(ip) > 0 {
		p.decodeIP(ip)
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
