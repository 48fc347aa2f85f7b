package flow

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Address families of a delta, as conntrack reports them in delta.Family.
const (
	familyIPv4 uint8 = 4
	familyIPv6 uint8 = 6
)

// IP protocol numbers that have names in labels.
const (
	ProtoICMP    uint8 = 1
	ProtoTCP     uint8 = 6
	ProtoUDP     uint8 = 17
	ProtoDCCP    uint8 = 33
	ProtoGRE     uint8 = 47
	ProtoICMPv6  uint8 = 58
	ProtoSCTP    uint8 = 132
	ProtoUDPLite uint8 = 136
)

// delta is what one flow moved since its previous delta, or during its whole
// life when it is the only one. Addresses and ports are those of the original
// direction; the Reply fields hold the reply direction tuple, which differs
// from the swapped original tuple when the flow is NATed.
type delta struct {
	// Family is 4 (IPv4) or 6 (IPv6), as conntrack reports it.
	Family uint8
	// Proto is the IP protocol number.
	Proto uint8
	// Src and Dst are the addresses of the original direction.
	Src, Dst netip.Addr
	// SPort and DPort are the ports of the original direction; 0 for
	// protocols without ports.
	SPort, DPort uint16
	// ReplySrc and ReplyDst are the addresses of the reply direction.
	ReplySrc, ReplyDst netip.Addr
	// ReplySPort and ReplyDPort are the ports of the reply direction.
	ReplySPort, ReplyDPort uint16
	// Zone is the conntrack zone.
	Zone uint16
	// Mark is the conntrack mark.
	Mark uint32
	// OrigPackets and OrigBytes were sent in the original direction.
	OrigPackets, OrigBytes uint64
	// ReplyPackets and ReplyBytes were sent in the reply direction.
	ReplyPackets, ReplyBytes uint64
	// Start and Stop are when the flow started and ended, in nanoseconds
	// since the Unix epoch (as conntrack reports them); zero when
	// nf_conntrack_timestamp is off.
	Start, Stop int64
	// Final marks the last delta of a flow: it counts as one flow and
	// observes the flow's duration.
	Final bool

	// natSet says that nat holds the flow's NAT class, for a flow whose
	// reply tuple is no longer known.
	natSet bool
	nat    uint8
}

// protoNames holds the label value of every protocol number.
var protoNames = func() (names [256]string) {
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	names[ProtoICMP] = "icmp"
	names[ProtoTCP] = "tcp"
	names[ProtoUDP] = "udp"
	names[ProtoDCCP] = "dccp"
	names[ProtoGRE] = "gre"
	names[ProtoICMPv6] = "icmpv6"
	names[ProtoSCTP] = "sctp"
	names[ProtoUDPLite] = "udplite"
	return names
}()

// ProtoName returns the label value of IP protocol p: its name when it has
// one (tcp, udp, icmp, icmpv6, sctp, gre, udplite, dccp), else its number.
func ProtoName(p uint8) string {
	return protoNames[p]
}

// ParseProto parses a protocol name as labels read it (tcp, udp...), in any case, or
// a decimal number from 0 to 255.
func ParseProto(s string) (uint8, error) {
	for i, n := range protoNames {
		if strings.EqualFold(n, s) {
			return uint8(i), nil
		}
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return uint8(n), nil
	}
	return 0, fmt.Errorf("%w %q: want tcp, udp, udplite, sctp, dccp, icmp, icmpv6, gre or a number from 0 to 255", errProto, s)
}

// hasPorts reports whether IP protocol p has ports: tcp, udp, udplite, sctp
// and dccp do.
func hasPorts(p uint8) bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP, ProtoDCCP:
		return true
	}
	return false
}

// familyName returns the label value of address family f.
func familyName(f uint8) string {
	switch f {
	case familyIPv4:
		return "ipv4"
	case familyIPv6:
		return "ipv6"
	}
	return strconv.Itoa(int(f))
}

// NAT classes of a flow, as the nat key reads them.
const (
	natNone uint8 = iota
	natSNAT
	natDNAT
	natBoth
)

var natNames = [...]string{natNone: "none", natSNAT: "snat", natDNAT: "dnat", natBoth: "both"}

// natClass classifies the NAT of d from its tuples: source NAT when the reply
// goes to another address or port than the original came from, destination
// NAT when the reply comes from another address or port than the original
// went to. A delta without a reply tuple is not NATed.
func natClass(d *delta) uint8 {
	if d.natSet {
		return d.nat
	}
	if !d.ReplySrc.IsValid() && !d.ReplyDst.IsValid() {
		return natNone
	}
	var c uint8
	if d.ReplyDst.Unmap() != d.Src.Unmap() || d.ReplyDPort != d.SPort {
		c |= natSNAT
	}
	if d.ReplySrc.Unmap() != d.Dst.Unmap() || d.ReplySPort != d.DPort {
		c |= natDNAT
	}
	return c
}
