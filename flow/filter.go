package flow

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// MarkMatch matches a conntrack mark m when m&Mask == Value&Mask. A zero
// Mask stands for 0xffffffff: the mark must equal Value.
type MarkMatch struct {
	Value, Mask uint32
}

// Rule matches a delta when every field it sets matches; a field matches when
// one of its values does. A Rule that sets no field matches every delta.
// Ports match only protocols that have ports: tcp, udp, udplite, sctp and
// dccp.
type Rule struct {
	// Src and Dst hold prefixes the original source and destination
	// addresses must be in.
	Src, Dst []netip.Prefix
	// Proto holds IP protocol numbers.
	Proto []uint8
	// SPort and DPort hold ranges the original ports must be in.
	SPort, DPort []PortRange
	// Zone holds conntrack zones.
	Zone []uint16
	// Mark holds conntrack mark matches.
	Mark []MarkMatch
}

// Filter decides which deltas a Pipeline counts: those matching one of the
// accept rules, or any when there are none, and none of the deny rules.
type Filter struct {
	accept, deny []Rule
}

// NewFilter returns a Filter of the accept and deny rules. Prefixes must be
// valid and not IPv4-mapped IPv6 (addresses are unmapped before the match),
// and port ranges must have Lo <= Hi. The rules are copied.
func NewFilter(accept, deny []Rule) (*Filter, error) {
	f := &Filter{}
	var err error
	if f.accept, err = cloneRules("accept", accept); err != nil {
		return nil, err
	}
	if f.deny, err = cloneRules("deny", deny); err != nil {
		return nil, err
	}
	return f, nil
}

// cloneRules returns a deep copy of rules with masked prefixes and explicit
// mark masks, or an error naming the first bad rule.
func cloneRules(kind string, rules []Rule) ([]Rule, error) {
	out := make([]Rule, len(rules))
	for i, r := range rules {
		c := Rule{
			Src:   slices.Clone(r.Src),
			Dst:   slices.Clone(r.Dst),
			Proto: slices.Clone(r.Proto),
			SPort: slices.Clone(r.SPort),
			DPort: slices.Clone(r.DPort),
			Zone:  slices.Clone(r.Zone),
			Mark:  slices.Clone(r.Mark),
		}
		for _, ps := range [][]netip.Prefix{c.Src, c.Dst} {
			for j, p := range ps {
				if !p.IsValid() || p.Addr().Is4In6() {
					return nil, fmt.Errorf("%w: %s rule %d: prefix %v is invalid or IPv4-mapped IPv6", errRule, kind, i, p)
				}
				ps[j] = p.Masked()
			}
		}
		for _, rs := range [][]PortRange{c.SPort, c.DPort} {
			for _, pr := range rs {
				if pr.Lo > pr.Hi {
					return nil, fmt.Errorf("%w: %s rule %d: port range %d-%d starts above its end", errRule, kind, i, pr.Lo, pr.Hi)
				}
			}
		}
		for j := range c.Mark {
			if c.Mark[j].Mask == 0 {
				c.Mark[j].Mask = ^uint32(0)
			}
		}
		out[i] = c
	}
	return out, nil
}

// match reports whether d is to be counted. A nil Filter accepts every
// delta; a nil delta is never counted.
func (f *Filter) match(d *delta) bool {
	if d == nil {
		return false
	}
	if f == nil {
		return true
	}
	if len(f.accept) > 0 {
		ok := false
		for i := range f.accept {
			if f.accept[i].match(d) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range f.deny {
		if f.deny[i].match(d) {
			return false
		}
	}
	return true
}

// match reports whether d matches every field r sets.
func (r *Rule) match(d *delta) bool {
	if len(r.Proto) > 0 && !slices.Contains(r.Proto, d.Proto) {
		return false
	}
	if len(r.Zone) > 0 && !slices.Contains(r.Zone, d.Zone) {
		return false
	}
	if len(r.SPort) > 0 && !(hasPorts(d.Proto) && inRanges(r.SPort, d.SPort)) {
		return false
	}
	if len(r.DPort) > 0 && !(hasPorts(d.Proto) && inRanges(r.DPort, d.DPort)) {
		return false
	}
	if len(r.Mark) > 0 && !markMatches(r.Mark, d.Mark) {
		return false
	}
	if len(r.Src) > 0 && !inPrefixes(r.Src, d.Src) {
		return false
	}
	if len(r.Dst) > 0 && !inPrefixes(r.Dst, d.Dst) {
		return false
	}
	return true
}

func inRanges(rs []PortRange, p uint16) bool {
	for _, r := range rs {
		if r.contains(p) {
			return true
		}
	}
	return false
}

func markMatches(ms []MarkMatch, mark uint32) bool {
	for _, m := range ms {
		if mark&m.Mask == m.Value&m.Mask {
			return true
		}
	}
	return false
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// narrowing is what every delta a Filter accepts has in common, as far as
// the kernel can filter a table dump by it: exact values only.
type narrowing struct {
	// Family is familyIPv4 or familyIPv6 when every accepted flow has that
	// family, else 0.
	Family uint8
	// Mark, when not nil, matches every accepted flow's mark.
	Mark *MarkMatch
	// Zone, when not nil, is every accepted flow's zone.
	Zone *uint16
}

// narrowing returns what every delta f accepts has in common. Only the
// accept rules narrow: a deny rule takes flows out, it never says what is
// left. A nil Filter, or one without accept rules, narrows nothing.
func (f *Filter) narrowing() narrowing {
	var n narrowing
	if f == nil || len(f.accept) == 0 {
		return n
	}
	fam := ruleFamily(&f.accept[0])
	mark, zone := f.accept[0].Mark, f.accept[0].Zone
	for i := range f.accept {
		r := &f.accept[i]
		if ruleFamily(r) != fam {
			fam = 0
		}
		if len(r.Mark) != 1 || len(mark) != 1 || r.Mark[0] != mark[0] {
			mark = nil
		}
		if len(r.Zone) != 1 || len(zone) != 1 || r.Zone[0] != zone[0] {
			zone = nil
		}
	}
	n.Family = fam
	if len(mark) == 1 {
		m := mark[0]
		n.Mark = &m
	}
	if len(zone) == 1 {
		z := zone[0]
		n.Zone = &z
	}
	return n
}

// ruleFamily returns the one family r's prefixes allow, or 0.
func ruleFamily(r *Rule) uint8 {
	var fam uint8
	for _, ps := range [][]netip.Prefix{r.Src, r.Dst} {
		if len(ps) == 0 {
			continue
		}
		f := prefixesFamily(ps)
		switch {
		case f == 0:
			return 0
		case fam == 0:
			fam = f
		case fam != f:
			return 0 // no flow can match: leave it to the rule
		}
	}
	return fam
}

// prefixesFamily returns the family of every prefix of ps, or 0 when they
// mix families.
func prefixesFamily(ps []netip.Prefix) uint8 {
	fam := familyIPv4
	if ps[0].Addr().Is6() {
		fam = familyIPv6
	}
	for _, p := range ps[1:] {
		if p.Addr().Is6() != (fam == familyIPv6) {
			return 0
		}
	}
	return fam
}

// EventFilter compiles f into a program for the conntrack event socket
// (ctnl.CompileEventFilter): the kernel then drops the DESTROY events of
// flows f surely rejects before they are queued, and f still judges every
// event the program keeps, so what is counted does not change. A nil
// Filter, or one without rules, needs no program: it returns nil.
func (f *Filter) EventFilter() (*ctnl.EventFilter, error) {
	if f == nil || len(f.accept)+len(f.deny) == 0 {
		return nil, nil
	}
	return ctnl.CompileEventFilter(kernelRules(f.accept), kernelRules(f.deny))
}

// Rules returns how many accept and deny rules f holds.
func (f *Filter) Rules() (accept, deny int) {
	if f == nil {
		return 0, 0
	}
	return len(f.accept), len(f.deny)
}

// kernelRules returns rules in the event filter's terms.
func kernelRules(rules []Rule) []ctnl.FilterRule {
	out := make([]ctnl.FilterRule, len(rules))
	for i, r := range rules {
		k := ctnl.FilterRule{Src: r.Src, Dst: r.Dst, Proto: r.Proto, Zone: r.Zone}
		for _, p := range r.SPort {
			k.SPort = append(k.SPort, ctnl.FilterPorts{Lo: p.Lo, Hi: p.Hi})
		}
		for _, p := range r.DPort {
			k.DPort = append(k.DPort, ctnl.FilterPorts{Lo: p.Lo, Hi: p.Hi})
		}
		for _, m := range r.Mark {
			k.Mark = append(k.Mark, ctnl.FilterMark{Value: m.Value, Mask: m.Mask})
		}
		out[i] = k
	}
	return out
}
