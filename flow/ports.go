package flow

import (
	"fmt"
	"strconv"
)

// PortRange is the ports from Lo to Hi, both included. A single port has
// Lo == Hi.
type PortRange struct {
	Lo, Hi uint16
}

// String returns the port as its number when the range holds one port, else
// "lo-hi".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// contains reports whether p is in r.
func (r PortRange) contains(p uint16) bool {
	return r.Lo <= p && p <= r.Hi
}

// Ports is a list of ports and port ranges that port keys read as: a listed
// single port reads as its number, a port in a listed range as "lo-hi", and
// any other port as "other".
type Ports struct {
	entries []PortRange
	// index maps every port to its entry index plus one, 0 when not
	// listed.
	index []uint32
}

// NewPorts returns Ports listing entries. Entries must have Lo <= Hi and must
// not overlap.
func NewPorts(entries []PortRange) (*Ports, error) {
	p := &Ports{entries: append([]PortRange(nil), entries...), index: make([]uint32, 1<<16)}
	for i, e := range p.entries {
		if e.Lo > e.Hi {
			return nil, fmt.Errorf("%w %d-%d: start above end", errPortRange, e.Lo, e.Hi)
		}
		for port := int(e.Lo); port <= int(e.Hi); port++ {
			if j := p.index[port]; j != 0 {
				return nil, fmt.Errorf("%w: %v overlaps %v", errPortOverlap, e, p.entries[j-1])
			}
			p.index[port] = uint32(i + 1)
		}
	}
	return p, nil
}

// Port key values: below 1<<16 a port number, else one of these, or
// portRange plus an entry index.
const (
	portNone  uint32 = 1 << 16
	portOther uint32 = 1<<16 + 1
	portRange uint32 = 1 << 17
)

// value returns the key value of port on protocol proto.
func (p *Ports) value(proto uint8, port uint16) uint32 {
	if !hasPorts(proto) {
		return portNone
	}
	if p == nil {
		return uint32(port)
	}
	i := p.index[port]
	if i == 0 {
		return portOther
	}
	e := p.entries[i-1]
	if e.Lo == e.Hi {
		return uint32(port)
	}
	return portRange + i - 1
}

// text returns the label value of key value v.
func (p *Ports) text(v uint32) string {
	switch {
	case v < portNone:
		return strconv.Itoa(int(v))
	case v == portNone:
		return "none"
	case v >= portRange && p != nil && int(v-portRange) < len(p.entries):
		return p.entries[v-portRange].String()
	}
	return other
}

// Lookup returns what port reads as on protocol proto: "none" for protocols
// without ports, else as the list says, or its number when p is nil.
func (p *Ports) Lookup(proto uint8, port uint16) string {
	return p.text(p.value(proto, port))
}
