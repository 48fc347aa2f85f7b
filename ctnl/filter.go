package ctnl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"golang.org/x/net/bpf"
)

// FilterPorts is a range of ports, Lo to Hi inclusive.
type FilterPorts struct {
	Lo, Hi uint16
}

// FilterMark matches a mark m when m&Mask == Value&Mask.
type FilterMark struct {
	Value, Mask uint32
}

// A FilterRule matches a conntrack entry when every field it sets matches;
// a field matches when one of its values does, as flow.Rule does:
// addresses and ports are the original direction's, ports match only
// protocols that have ports, and an IPv4-mapped IPv6 address matches an
// IPv4 prefix. A rule that sets no field matches every entry.
type FilterRule struct {
	Src, Dst     []netip.Prefix
	Proto        []uint8
	SPort, DPort []FilterPorts
	Zone         []uint16
	Mark         []FilterMark
}

// EventFilter is a classic BPF program for the event socket compiled from
// accept and deny rules (CompileEventFilter). The kernel runs it on every
// event and drops those it refuses before they are queued.
//
// The program only drops an event when the rules surely refuse it: a
// DESTROY event whose entry matches a deny rule, or matches none of the
// accept rules, as far as the program can tell from the message. Anything
// it cannot judge (another message type, a missing attribute, a rule set
// too large for one program) is kept, for the userspace filter, which
// still judges every event the program keeps. So filtering in the kernel
// never changes what is counted, only what it costs.
type EventFilter struct {
	// Program is the assembled program, for netlink.Conn.SetBPF.
	Program []bpf.RawInstruction
	// DenyRules and AcceptRules count the rules the program expresses;
	// AcceptRules is 0 when the accept rules did not fit (then the program
	// keeps every event the deny rules it holds do not refuse).
	DenyRules, AcceptRules int
	// Complete reports whether every rule is in the program.
	Complete bool

	insns []bpf.Instruction
}

// maxFilterInsns is the kernel's limit on a classic BPF program
// (BPF_MAXINSNS).
const maxFilterInsns = 4096

// keepAll and dropAll are the program's two answers: a socket filter
// returns how many bytes of the message to keep.
const (
	keepAll = 0xffffffff
	dropAll = 0
)

// Offsets and values the program reads from a ctnetlink message: a
// netlink header (16 bytes), a struct nfgenmsg (4), then the attributes.
const (
	offNlmsgType = 4  // nlmsg_type, in the host's order
	offFamily    = 16 // nfgen_family
	offAttrs     = 20 // the first attribute
)

// Scratch memory slots.
const (
	memFamily = 0
	memValue  = 1
)

// CompileEventFilter compiles accept and deny rules into an EventFilter. It
// fails only on a rule the program cannot represent at all (an invalid
// prefix, a port range that ends before it starts).
func CompileEventFilter(accept, deny []FilterRule) (*EventFilter, error) {
	for kind, rules := range map[string][]FilterRule{"accept": accept, "deny": deny} {
		for i, r := range rules {
			for _, ps := range [][]netip.Prefix{r.Src, r.Dst} {
				for _, p := range ps {
					if !p.IsValid() || p.Addr().Is4In6() {
						return nil, fmt.Errorf("%w: %s rule %d: prefix %v", errFilter, kind, i, p)
					}
				}
			}
			for _, rs := range [][]FilterPorts{r.SPort, r.DPort} {
				for _, pr := range rs {
					if pr.Lo > pr.Hi {
						return nil, fmt.Errorf("%w: %s rule %d: port range %d-%d", errFilter, kind, i, pr.Lo, pr.Hi)
					}
				}
			}
		}
	}
	try := func(acc []FilterRule, k int) *EventFilter {
		insns := generate(acc, deny[:k])
		if len(insns) > maxFilterInsns {
			return nil
		}
		return &EventFilter{insns: insns, DenyRules: k, AcceptRules: len(acc)}
	}
	// The whole set if it fits; else as many deny rules as fit beside the
	// accept rules; else the accept rules go (they can only drop events
	// when all of them are in the program) and deny rules fill the room.
	var f *EventFilter
	for _, acc := range [][]FilterRule{accept, nil} {
		if f = try(acc, len(deny)); f != nil {
			break
		}
		k := sort.Search(len(deny)+1, func(k int) bool { return try(acc, k) == nil }) - 1
		if k >= 0 {
			if f = try(acc, k); f != nil && (len(acc) > 0 || k > 0) {
				break
			}
			f = nil
		}
	}
	if f == nil {
		f = &EventFilter{insns: []bpf.Instruction{bpf.RetConstant{Val: keepAll}}}
	}
	f.Complete = f.DenyRules == len(deny) && f.AcceptRules == len(accept)
	prog, err := bpf.Assemble(f.insns)
	if err != nil {
		return nil, fmt.Errorf("%w: assembling: %v", errFilter, err)
	}
	f.Program = prog
	return f, nil
}

// Summary says in one line what the program holds.
func (f *EventFilter) Summary() string {
	s := fmt.Sprintf("%d deny and %d accept rules in %d instructions", f.DenyRules, f.AcceptRules, len(f.Program))
	if !f.Complete {
		s += " (the rest did not fit the kernel's limit and is judged in userspace only)"
	}
	return s
}

// program builds a filter program with symbolic jump targets.
type program struct {
	insns  []bpf.Instruction
	jumps  map[int]int // instruction index of a Jump -> label
	labels []int       // label -> instruction index, -1 until placed
}

func (p *program) emit(is ...bpf.Instruction) { p.insns = append(p.insns, is...) }

func (p *program) label() int {
	p.labels = append(p.labels, -1)
	return len(p.labels) - 1
}

func (p *program) place(l int) { p.labels[l] = len(p.insns) }

// jump emits an unconditional jump to l, whose 32-bit offset reaches
// anywhere.
func (p *program) jump(l int) {
	p.jumps[len(p.insns)] = l
	p.emit(bpf.Jump{})
}

// jumpIf jumps to l when A compares to k by cond. Conditional jumps only
// skip the next instruction, which is the unconditional jump to l: their
// 8-bit offsets then never overflow, whatever the program's size.
func (p *program) jumpIf(cond bpf.JumpTest, k uint32, l int) {
	p.emit(bpf.JumpIf{Cond: cond, Val: k, SkipTrue: 0, SkipFalse: 1})
	p.jump(l)
}

// resolve fills in the offsets of the jumps.
func (p *program) resolve() []bpf.Instruction {
	for i, l := range p.jumps {
		p.insns[i] = bpf.Jump{Skip: uint32(p.labels[l] - i - 1)}
	}
	return p.insns
}

// nativeType is nlmsg_type as the program's 16-bit load, which reads in
// network order, sees it: the header is in the host's order.
func nativeType(t uint16) uint32 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], t)
	return uint32(binary.BigEndian.Uint16(b[:]))
}

// generate returns the program for the rules.
func generate(accept, deny []FilterRule) []bpf.Instruction {
	p := &program{jumps: map[int]int{}}
	keep, drop := p.label(), p.label()
	// Only DESTROY events are judged, and only whole headers are read (a
	// load past the end would end the program with a drop).
	p.emit(bpf.LoadExtension{Num: bpf.ExtLen})
	p.jumpIf(bpf.JumpLessThan, offAttrs, keep)
	p.emit(bpf.LoadAbsolute{Off: offNlmsgType, Size: 2})
	p.emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: nativeType(subsysCT<<8 | msgCTDelete), SkipTrue: 1})
	p.jump(keep)
	p.emit(bpf.LoadAbsolute{Off: offFamily, Size: 1}, bpf.StoreScratch{Src: bpf.RegA, N: memFamily})
	// A deny rule that surely matches drops the event; one that may not
	// match lets the next one judge.
	for i := range deny {
		next := p.label()
		p.rule(&deny[i], next, next)
		p.jump(drop)
		p.place(next)
	}
	if len(accept) > 0 {
		// An accept rule that may match keeps the event; when every one
		// surely does not, it is dropped.
		for i := range accept {
			next, cont := p.label(), p.label()
			p.rule(&accept[i], next, cont)
			p.place(cont)
			p.jump(keep)
			p.place(next)
		}
		p.jump(drop)
	}
	p.place(keep)
	p.emit(bpf.RetConstant{Val: keepAll})
	p.place(drop)
	p.emit(bpf.RetConstant{Val: dropAll})
	return p.resolve()
}

// rule emits the fields of r in turn; each goes on to the next when it
// surely matches, jumps to onFalse when it surely does not, and to
// onUnknown when the message does not tell. After the last field the rule
// has surely matched.
func (p *program) rule(r *FilterRule, onFalse, onUnknown int) {
	field := func(emit func(onTrue int)) {
		ok := p.label()
		emit(ok)
		p.place(ok)
	}
	if len(r.Proto) > 0 {
		field(func(onTrue int) {
			p.loadProto(onUnknown)
			for _, v := range r.Proto {
				p.jumpIf(bpf.JumpEqual, uint32(v), onTrue)
			}
			p.jump(onFalse)
		})
	}
	if len(r.Zone) > 0 {
		field(func(onTrue int) {
			p.loadZone(onUnknown)
			for _, v := range r.Zone {
				p.jumpIf(bpf.JumpEqual, uint32(v), onTrue)
			}
			p.jump(onFalse)
		})
	}
	for _, ports := range []struct {
		attr   uint32
		ranges []FilterPorts
	}{{ctaProtoSrcPort, r.SPort}, {ctaProtoDstPort, r.DPort}} {
		if len(ports.ranges) == 0 {
			continue
		}
		field(func(onTrue int) {
			// Only protocols that have ports match.
			p.loadProto(onUnknown)
			has := p.label()
			for _, v := range []uint32{6, 17, 33, 132, 136} { // tcp, udp, dccp, sctp, udplite
				p.jumpIf(bpf.JumpEqual, v, has)
			}
			p.jump(onFalse)
			p.place(has)
			p.find(onUnknown, ctaTupleOrig, ctaTupleProto, ports.attr)
			p.emit(bpf.TAX{}, bpf.LoadIndirect{Off: 4, Size: 2})
			for _, pr := range ports.ranges {
				if pr.Lo == pr.Hi {
					p.jumpIf(bpf.JumpEqual, uint32(pr.Lo), onTrue)
					continue
				}
				next := p.label()
				p.jumpIf(bpf.JumpLessThan, uint32(pr.Lo), next)
				p.jumpIf(bpf.JumpLessOrEqual, uint32(pr.Hi), onTrue)
				p.place(next)
			}
			p.jump(onFalse)
		})
	}
	if len(r.Mark) > 0 {
		field(func(onTrue int) {
			// No CTA_MARK: the mark is 0, as the decoder reads it.
			have, zero := p.label(), p.label()
			p.emit(bpf.LoadConstant{Dst: bpf.RegA, Val: offAttrs}, bpf.LoadConstant{Dst: bpf.RegX, Val: ctaMark},
				bpf.LoadExtension{Num: bpf.ExtNetlinkAttr})
			p.jumpIf(bpf.JumpEqual, 0, zero)
			p.emit(bpf.TAX{}, bpf.LoadIndirect{Off: 4, Size: 4})
			p.jump(have)
			p.place(zero)
			p.emit(bpf.LoadConstant{Dst: bpf.RegA, Val: 0})
			p.place(have)
			p.emit(bpf.StoreScratch{Src: bpf.RegA, N: memValue})
			for _, m := range r.Mark {
				p.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memValue}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: m.Mask})
				p.jumpIf(bpf.JumpEqual, m.Value&m.Mask, onTrue)
			}
			p.jump(onFalse)
		})
	}
	for _, addrs := range []struct {
		v4, v6   uint32
		prefixes []netip.Prefix
	}{{ctaIPv4Src, ctaIPv6Src, r.Src}, {ctaIPv4Dst, ctaIPv6Dst, r.Dst}} {
		if len(addrs.prefixes) == 0 {
			continue
		}
		field(func(onTrue int) { p.address(addrs.v4, addrs.v6, addrs.prefixes, onTrue, onFalse, onUnknown) })
	}
}

// find leaves in A the offset of the attribute at path (top level first),
// or jumps to missing.
func (p *program) find(missing int, path ...uint32) {
	p.emit(bpf.LoadConstant{Dst: bpf.RegA, Val: offAttrs})
	for i, typ := range path {
		ext := bpf.ExtNetlinkAttrNested
		if i == 0 {
			ext = bpf.ExtNetlinkAttr
		}
		p.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: typ}, bpf.LoadExtension{Num: ext})
		p.jumpIf(bpf.JumpEqual, 0, missing)
	}
}

// loadProto loads the original tuple's protocol number into A.
func (p *program) loadProto(missing int) {
	p.find(missing, ctaTupleOrig, ctaTupleProto, ctaProtoNum)
	p.emit(bpf.TAX{}, bpf.LoadIndirect{Off: 4, Size: 1})
}

// loadZone loads the entry's zone into A: CTA_ZONE, 0 without it. A zone of
// the original tuple's own (directional zones) is not judged.
func (p *program) loadZone(unknown int) {
	none, have := p.label(), p.label()
	p.find(none, ctaTupleOrig, ctaTupleZone)
	p.jump(unknown)
	p.place(none)
	zero := p.label()
	p.find(zero, ctaZone)
	p.emit(bpf.TAX{}, bpf.LoadIndirect{Off: 4, Size: 2})
	p.jump(have)
	p.place(zero)
	p.emit(bpf.LoadConstant{Dst: bpf.RegA, Val: 0})
	p.place(have)
}

// address emits the match of the original tuple's address (attribute v4 or
// v6 by family) against prefixes.
func (p *program) address(v4, v6 uint32, prefixes []netip.Prefix, onTrue, onFalse, onUnknown int) {
	var p4, p6 []netip.Prefix
	for _, pr := range prefixes {
		if pr.Addr().Is4() {
			p4 = append(p4, pr.Masked())
		} else {
			p6 = append(p6, pr.Masked())
		}
	}
	is4, is6 := p.label(), p.label()
	p.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memFamily})
	p.jumpIf(bpf.JumpEqual, afINET, is4)
	p.jumpIf(bpf.JumpEqual, afINET6, is6)
	p.jump(onUnknown)

	p.place(is4)
	if len(p4) == 0 {
		p.jump(onFalse)
	} else {
		p.find(onUnknown, ctaTupleOrig, ctaTupleIP, v4)
		p.emit(bpf.TAX{}, bpf.LoadIndirect{Off: 4, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: memValue})
		for _, pr := range p4 {
			if pr.Bits() == 0 {
				p.jump(onTrue)
				continue
			}
			b := pr.Addr().As4()
			p.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memValue}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask32(pr.Bits())})
			p.jumpIf(bpf.JumpEqual, binary.BigEndian.Uint32(b[:]), onTrue)
		}
		p.jump(onFalse)
	}

	p.place(is6)
	p.find(onUnknown, ctaTupleOrig, ctaTupleIP, v6)
	p.emit(bpf.TAX{})
	if len(p4) > 0 {
		// An IPv4-mapped address matches IPv4 prefixes: not judged here.
		notMapped := p.label()
		for i, w := range []uint32{0, 0, 0xffff} {
			p.emit(bpf.LoadIndirect{Off: uint32(4 + 4*i), Size: 4})
			p.jumpIf(bpf.JumpNotEqual, w, notMapped)
		}
		p.jump(onUnknown)
		p.place(notMapped)
	}
	for _, pr := range p6 {
		next := p.label()
		b := pr.Addr().As16()
		for w, bits := 0, pr.Bits(); bits > 0; w, bits = w+1, bits-32 {
			p.emit(bpf.LoadIndirect{Off: uint32(4 + 4*w), Size: 4})
			want := binary.BigEndian.Uint32(b[4*w:])
			if bits < 32 {
				p.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask32(bits)})
			}
			p.jumpIf(bpf.JumpNotEqual, want, next)
		}
		p.jump(onTrue)
		p.place(next)
	}
	p.jump(onFalse)
}

// mask32 returns the netmask of a prefix of bits (1 to 32) in a word.
func mask32(bits int) uint32 {
	if bits >= 32 {
		return ^uint32(0)
	}
	return ^uint32(0) << (32 - bits)
}
