package flow

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// other is the value of a key whose value is not one of those listed: an
// address outside every network, a port outside the port list, and every key
// of the overflow series.
const other = "other"

// Networks maps addresses to network names by longest-prefix match. A nil
// *Networks has no networks.
type Networks struct {
	// names holds the network names, sorted; a name's index plus one is
	// its id, 0 meaning "other".
	names []string
	// v4 and v6 hold one level per prefix length in use, longest first.
	v4 []level[uint32]
	v6 []level[[2]uint64]
}

// level maps the masked addresses of the prefixes of one length to the ids
// of their networks.
type level[A comparable] struct {
	bits int
	mask A
	ids  map[A]uint16
}

// NewNetworks returns Networks holding the prefixes of each named network.
// Names must not be empty nor "other"; a prefix may belong to one network
// only. Prefixes are masked; IPv4-mapped IPv6 prefixes are refused, as
// addresses are unmapped before the match.
func NewNetworks(networks map[string][]netip.Prefix) (*Networks, error) {
	n := &Networks{}
	for name := range networks {
		if name == "" || name == other {
			return nil, fmt.Errorf("%w %q: names must not be empty nor %q", errNetworkName, name, other)
		}
		n.names = append(n.names, name)
	}
	if len(n.names) >= 1<<16 {
		return nil, fmt.Errorf("%w: %d, at most %d", errTooManyNetworks, len(n.names), 1<<16-1)
	}
	slices.Sort(n.names)
	for i, name := range n.names {
		id := uint16(i + 1)
		for _, p := range networks[name] {
			if !p.IsValid() {
				return nil, fmt.Errorf("%w in network %q: %v", errPrefix, name, p)
			}
			if p.Addr().Is4In6() {
				return nil, fmt.Errorf("%w in network %q: %v is IPv4-mapped IPv6; give the IPv4 prefix", errPrefix, name, p)
			}
			p = p.Masked()
			var old uint16
			if p.Addr().Is4() {
				n.v4, old = insert(n.v4, p.Bits(), v4Key(p.Addr()), id, mask4)
			} else {
				n.v6, old = insert(n.v6, p.Bits(), v6Key(p.Addr()), id, mask6)
			}
			if old != 0 && old != id {
				return nil, fmt.Errorf("%w: %v is in %q and %q", errDuplicatePrefix, p, n.names[old-1], name)
			}
		}
	}
	return n, nil
}

// insert adds the masked address a of a prefix of length bits to levels,
// unless it is there already; it returns the levels and the id a had, 0 if
// none.
func insert[A comparable](levels []level[A], bits int, a A, id uint16, mask func(int) A) ([]level[A], uint16) {
	i := slices.IndexFunc(levels, func(l level[A]) bool { return l.bits == bits })
	if i < 0 {
		levels = append(levels, level[A]{bits: bits, mask: mask(bits), ids: make(map[A]uint16)})
		slices.SortFunc(levels, func(x, y level[A]) int { return y.bits - x.bits })
		i = slices.IndexFunc(levels, func(l level[A]) bool { return l.bits == bits })
	}
	if old, ok := levels[i].ids[a]; ok {
		return levels, old
	}
	levels[i].ids[a] = id
	return levels, 0
}

func v4Key(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func v6Key(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// mask4 returns the mask of an IPv4 prefix length.
func mask4(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// mask6 returns the mask of an IPv6 prefix length.
func mask6(bits int) [2]uint64 {
	var m [2]uint64
	switch {
	case bits == 0:
	case bits <= 64:
		m[0] = ^uint64(0) << (64 - bits)
	default:
		m[0] = ^uint64(0)
		m[1] = ^uint64(0) << (128 - bits)
	}
	return m
}

// sortedNames returns the network names, sorted.
func (n *Networks) sortedNames() []string {
	if n == nil {
		return nil
	}
	return slices.Clone(n.names)
}

// lookup returns the id of the network holding a, 0 when none does. It does
// not allocate.
func (n *Networks) lookup(a netip.Addr) uint16 {
	if n == nil {
		return 0
	}
	a = a.Unmap()
	switch {
	case a.Is4():
		k := v4Key(a)
		for i := range n.v4 {
			l := &n.v4[i]
			if id, ok := l.ids[k&l.mask]; ok {
				return id
			}
		}
	case a.Is6():
		k := v6Key(a)
		for i := range n.v6 {
			l := &n.v6[i]
			if id, ok := l.ids[[2]uint64{k[0] & l.mask[0], k[1] & l.mask[1]}]; ok {
				return id
			}
		}
	}
	return 0
}

// name returns the name of network id.
func (n *Networks) name(id uint16) string {
	if id == 0 || n == nil || int(id) > len(n.names) {
		return other
	}
	return n.names[id-1]
}

// Lookup returns the name of the network holding a, by longest-prefix match,
// or "other" when none does.
func (n *Networks) Lookup(a netip.Addr) string {
	return n.name(n.lookup(a))
}
