package ctnl

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/ti-mo/netfilter"
	"golang.org/x/net/bpf"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netlinktest"
)

// runFilter runs a classic BPF program on a message as the kernel's
// interpreter does, the netlink attribute extensions included (which
// golang.org/x/net/bpf's VM does not implement): it returns the program's
// answer, the bytes to keep (0: drop).
func runFilter(t testing.TB, prog []bpf.RawInstruction, pkt []byte) uint32 {
	t.Helper()
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatal("the program does not disassemble")
	}
	var a, x uint32
	var mem [16]uint32
	load := func(off uint32, size int) (uint32, bool) {
		if int(off)+size > len(pkt) || int(off) < 0 {
			return 0, false
		}
		switch size {
		case 1:
			return uint32(pkt[off]), true
		case 2:
			return uint32(binary.BigEndian.Uint16(pkt[off:])), true
		}
		return binary.BigEndian.Uint32(pkt[off:]), true
	}
	for pc := 0; pc < len(insns); pc++ {
		switch in := insns[pc].(type) {
		case bpf.LoadConstant:
			if in.Dst == bpf.RegA {
				a = in.Val
			} else {
				x = in.Val
			}
		case bpf.LoadAbsolute:
			v, ok := load(in.Off, in.Size)
			if !ok {
				return 0
			}
			a = v
		case bpf.LoadIndirect:
			v, ok := load(in.Off+x, in.Size)
			if !ok {
				return 0
			}
			a = v
		case bpf.LoadScratch:
			if in.Dst == bpf.RegA {
				a = mem[in.N]
			} else {
				x = mem[in.N]
			}
		case bpf.StoreScratch:
			if in.Src == bpf.RegA {
				mem[in.N] = a
			} else {
				mem[in.N] = x
			}
		case bpf.LoadExtension:
			switch in.Num {
			case bpf.ExtNetlinkAttr:
				a = nlaFind(pkt, a, len(pkt), x)
			case bpf.ExtNetlinkAttrNested:
				a = nlaFindNested(pkt, a, x)
			case bpf.ExtLen:
				a = uint32(len(pkt))
			default:
				t.Fatalf("extension %v", in.Num)
			}
		case bpf.TAX:
			x = a
		case bpf.TXA:
			a = x
		case bpf.ALUOpConstant:
			if in.Op != bpf.ALUOpAnd {
				t.Fatalf("ALU op %v", in.Op)
			}
			a &= in.Val
		case bpf.Jump:
			pc += int(in.Skip)
		case bpf.JumpIf:
			var c bool
			switch in.Cond {
			case bpf.JumpEqual:
				c = a == in.Val
			case bpf.JumpNotEqual:
				c = a != in.Val
			case bpf.JumpLessThan:
				c = a < in.Val
			case bpf.JumpLessOrEqual:
				c = a <= in.Val
			case bpf.JumpGreaterThan:
				c = a > in.Val
			case bpf.JumpGreaterOrEqual:
				c = a >= in.Val
			default:
				t.Fatalf("jump %v", in.Cond)
			}
			if c {
				pc += int(in.SkipTrue)
			} else {
				pc += int(in.SkipFalse)
			}
		case bpf.RetConstant:
			return in.Val
		default:
			t.Fatalf("instruction %#v", in)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// nlaFind is the kernel's nla_find from offset off (bpf_skb_get_nlattr):
// the offset of the first attribute of type typ, or 0.
func nlaFind(pkt []byte, off uint32, end int, typ uint32) uint32 {
	if len(pkt) < 4 || int(off) > len(pkt)-4 {
		return 0
	}
	for o := int(off); o+4 <= end; {
		l := int(binary.NativeEndian.Uint16(pkt[o:]))
		if l < 4 || o+l > end {
			return 0
		}
		if uint32(binary.NativeEndian.Uint16(pkt[o+2:])&0x3fff) == typ {
			return uint32(o)
		}
		o += (l + 3) &^ 3
	}
	return 0
}

// nlaFindNested is bpf_skb_get_nlattr_nest: the attribute of type typ
// inside the one at off.
func nlaFindNested(pkt []byte, off uint32, typ uint32) uint32 {
	if len(pkt) < 4 || int(off) > len(pkt)-4 {
		return 0
	}
	l := int(binary.NativeEndian.Uint16(pkt[off:]))
	if l > len(pkt)-int(off) {
		return 0
	}
	return nlaFind(pkt, off+4, int(off)+l, typ)
}

// matchRules is the userspace filter's judgement of f (flow.Filter.Match,
// in ctnl's terms): the oracle the program must never contradict.
func matchRules(accept, deny []FilterRule, f *Flow) bool {
	match := func(r *FilterRule) bool {
		hasPorts := slices.Contains([]uint8{6, 17, 33, 132, 136}, f.Orig.Proto)
		inPorts := func(rs []FilterPorts, p uint16) bool {
			return slices.ContainsFunc(rs, func(r FilterPorts) bool { return r.Lo <= p && p <= r.Hi })
		}
		inPrefixes := func(ps []netip.Prefix, a netip.Addr) bool {
			return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) })
		}
		switch {
		case len(r.Proto) > 0 && !slices.Contains(r.Proto, f.Orig.Proto),
			len(r.Zone) > 0 && !slices.Contains(r.Zone, f.Zone),
			len(r.SPort) > 0 && !(hasPorts && inPorts(r.SPort, f.Orig.SPort)),
			len(r.DPort) > 0 && !(hasPorts && inPorts(r.DPort, f.Orig.DPort)),
			len(r.Mark) > 0 && !slices.ContainsFunc(r.Mark, func(m FilterMark) bool { return f.Mark&m.Mask == m.Value&m.Mask }),
			len(r.Src) > 0 && !inPrefixes(r.Src, f.Orig.Src),
			len(r.Dst) > 0 && !inPrefixes(r.Dst, f.Orig.Dst):
			return false
		}
		return true
	}
	if len(accept) > 0 && !slices.ContainsFunc(accept, func(r FilterRule) bool { return match(&r) }) {
		return false
	}
	return !slices.ContainsFunc(deny, func(r FilterRule) bool { return match(&r) })
}

var (
	p4  = netip.MustParsePrefix
	lan = p4("192.168.0.0/16")
	dc  = p4("10.20.0.0/16")
	v6  = p4("fd00::/8")
	v6h = p4("2001:db8:1::/48")
)

// filterFlow is a flow of the filter tests and the message of its DESTROY
// event.
type filterFlow struct {
	name      string
	f         Flow
	tupleZone bool // a zone of the original tuple's own (directional zones)
}

func (ff filterFlow) message(t testing.TB) []byte {
	fam := netfilter.ProtoIPv4
	if ff.f.Orig.Src.Is6() {
		fam = netfilter.ProtoIPv6
	}
	orig := tuple(ctaTupleOrig, ff.f.Orig.Src, ff.f.Orig.Dst, ff.f.Orig.Proto, ff.f.Orig.SPort, ff.f.Orig.DPort)
	if ff.tupleZone {
		orig.Children = append(orig.Children, u16(ctaTupleZone, ff.f.Zone))
	}
	attrs := []netfilter.Attribute{orig, tuple(ctaTupleReply, ff.f.Orig.Dst, ff.f.Orig.Src, ff.f.Orig.Proto, ff.f.Orig.DPort, ff.f.Orig.SPort),
		u32(ctaStatus, 0x18e), u32(ctaID, 77)}
	if ff.f.Mark != 0 {
		attrs = append(attrs, u32(ctaMark, ff.f.Mark))
	}
	if ff.f.Zone != 0 && !ff.tupleZone {
		attrs = append(attrs, u16(ctaZone, ff.f.Zone))
	}
	return netlinktest.Datagram(destroyMessage(t, fam, attrs...))
}

func udp(src, dst string, sport, dport uint16) Flow {
	return Flow{Orig: Tuple{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 17, SPort: sport, DPort: dport}}
}

// filterFlows covers every field and the edges the program must judge as
// userspace does: prefix edges, mapped addresses, protocols without ports,
// marks and zones absent or present.
func filterFlows() []filterFlow {
	withMark := udp("10.20.3.4", "8.8.8.8", 5000, 53)
	withMark.Mark = 0x12
	zoned := udp("192.168.1.1", "192.168.2.2", 1, 2)
	zoned.Zone = 5
	icmp := Flow{Orig: Tuple{Src: netip.MustParseAddr("192.168.9.9"), Dst: netip.MustParseAddr("1.1.1.1"), Proto: 1}}
	tcp6 := Flow{Orig: Tuple{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("2001:db8:1::9"), Proto: 6, SPort: 40000, DPort: 443}}
	mapped := Flow{Orig: Tuple{Src: netip.MustParseAddr("::ffff:192.168.1.1"), Dst: netip.MustParseAddr("2001:db8:2::1"), Proto: 6, SPort: 1, DPort: 22}}
	return []filterFlow{
		{name: "lan dns", f: udp("192.168.1.10", "192.168.1.1", 33000, 53)},
		{name: "lan edge low", f: udp("192.168.0.0", "10.0.0.1", 1, 80)},
		{name: "lan edge high", f: udp("192.168.255.255", "10.0.0.1", 1, 8080)},
		{name: "outside lan", f: udp("192.169.0.0", "10.20.0.1", 1, 8081)},
		{name: "dc to dns, marked", f: withMark},
		{name: "zone 5", f: zoned},
		{name: "zone 5 on the tuple", f: zoned, tupleZone: true},
		{name: "icmp", f: icmp},
		{name: "tcp6", f: tcp6},
		{name: "mapped v4 in v6", f: mapped},
	}
}

// filterSets are rule sets of the tests, named.
var filterSets = []struct {
	name         string
	accept, deny []FilterRule
}{
	{"none", nil, nil},
	{"accept lan", []FilterRule{{Src: []netip.Prefix{lan}}}, nil},
	{"deny lan", nil, []FilterRule{{Src: []netip.Prefix{lan}}}},
	{"deny everything", nil, []FilterRule{{}}},
	{"accept lan and v6, deny dns", []FilterRule{{Src: []netip.Prefix{lan, v6}}}, []FilterRule{{Proto: []uint8{17}, DPort: []FilterPorts{{53, 53}}}}},
	{"deny port range", nil, []FilterRule{{DPort: []FilterPorts{{8000, 8080}}}}},
	{"accept dst v6 /48 or dc", []FilterRule{{Dst: []netip.Prefix{v6h}}, {Dst: []netip.Prefix{dc}}}, nil},
	{"accept marked", []FilterRule{{Mark: []FilterMark{{0x10, 0xf0}}}}, nil},
	{"deny mark 0", nil, []FilterRule{{Mark: []FilterMark{{0, 0xffffffff}}}}},
	{"accept zone 5", []FilterRule{{Zone: []uint16{5}}}, nil},
	{"deny zone 0", nil, []FilterRule{{Zone: []uint16{0}}}},
	{"accept tcp or udp ports", []FilterRule{{Proto: []uint8{6}, DPort: []FilterPorts{{443, 443}}}, {SPort: []FilterPorts{{30000, 40000}}}}, nil},
	{"deny lan src to lan dst", nil, []FilterRule{{Src: []netip.Prefix{lan}, Dst: []netip.Prefix{lan}}}},
	{"accept ::/0", []FilterRule{{Src: []netip.Prefix{p4("::/0")}}}, nil},
	{"accept 0.0.0.0/0", []FilterRule{{Src: []netip.Prefix{p4("0.0.0.0/0")}}}, nil},
}

// TestEventFilterAgreesWithUserspace runs every rule set's program on every
// flow's DESTROY message: where the program drops an event, the userspace
// filter must refuse it; where the message tells everything (no
// directional zone, no IPv4-mapped address beside IPv4 prefixes), the two
// must agree exactly.
func TestEventFilterAgreesWithUserspace(t *testing.T) {
	for _, set := range filterSets {
		t.Run(set.name, func(t *testing.T) {
			f, err := CompileEventFilter(set.accept, set.deny)
			if err != nil {
				t.Fatal(err)
			}
			if !f.Complete {
				t.Errorf("%s: not complete", f.Summary())
			}
			for _, ff := range filterFlows() {
				kept := runFilter(t, f.Program, ff.message(t)) != 0
				want := matchRules(set.accept, set.deny, &ff.f)
				undecidable := ff.tupleZone || ff.f.Orig.Src.Is4In6()
				switch {
				case !kept && want:
					t.Errorf("%s: the program drops an event userspace counts", ff.name)
				case kept && !want && !undecidable:
					t.Errorf("%s: the program keeps an event userspace refuses, though the message tells everything", ff.name)
				}
			}
		})
	}
}

// TestEventFilterKeepsOtherMessages checks that anything but a DESTROY
// event, and a DESTROY event without the attributes a rule needs, is kept.
func TestEventFilterKeepsOtherMessages(t *testing.T) {
	f, err := CompileEventFilter(nil, []FilterRule{{Src: []netip.Prefix{lan}}, {Proto: []uint8{17}}})
	if err != nil {
		t.Fatal(err)
	}
	flow := filterFlows()[0]
	msg := flow.message(t)
	if runFilter(t, f.Program, msg) != 0 {
		t.Fatal("the deny rules do not drop the lan flow")
	}
	other := slices.Clone(msg)
	binary.NativeEndian.PutUint16(other[4:], subsysCT<<8|msgCTNew)
	noTuple := netlinktest.Datagram(destroyMessage(t, netfilter.ProtoIPv4, u32(ctaMark, 1)))
	for name, m := range map[string][]byte{
		"a NEW message":      other,
		"no original tuple":  noTuple,
		"a truncated header": msg[:10],
		"an empty message":   nil,
		"the tuple cut off":  msg[:40],
	} {
		if runFilter(t, f.Program, m) == 0 {
			t.Errorf("%s is dropped: only DESTROY events the rules surely refuse may be", name)
		}
	}
}

// TestEventFilterTooLarge compiles a deny set too large for one program:
// the program holds what fits, says so, and still never drops what
// userspace counts.
func TestEventFilterTooLarge(t *testing.T) {
	var deny, accept []FilterRule
	for i := range 2000 {
		deny = append(deny, FilterRule{Src: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)}})
	}
	accept = []FilterRule{{Src: []netip.Prefix{p4("10.0.0.0/8")}}}
	f, err := CompileEventFilter(accept, deny)
	if err != nil {
		t.Fatal(err)
	}
	if f.Complete || f.DenyRules == 0 || f.DenyRules == len(deny) || len(f.Program) > maxFilterInsns {
		t.Fatalf("%s: want a partial program within %d instructions", f.Summary(), maxFilterInsns)
	}
	for _, src := range []string{"10.0.0.1", "10.7.207.1", "10.5.1.1", "11.0.0.1"} {
		ff := filterFlow{f: udp(src, "1.1.1.1", 1, 2)}
		kept := runFilter(t, f.Program, ff.message(t)) != 0
		if want := matchRules(accept, deny, &ff.f); !kept && want {
			t.Errorf("%s: dropped, but userspace counts it", src)
		}
	}
	// The first deny rule is in the program: its flows are dropped.
	if ff := (filterFlow{f: udp("10.0.0.1", "1.1.1.1", 1, 2)}); runFilter(t, f.Program, ff.message(t)) != 0 {
		t.Errorf("10.0.0.1, denied by the program's first rule, is kept (%s)", f.Summary())
	}
}

// TestEventFilterRandom compiles random rule sets and judges random flows,
// with the same invariant as TestEventFilterAgreesWithUserspace.
func TestEventFilterRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addrs := []string{"10.0.0.1", "10.0.1.1", "192.168.1.1", "8.8.8.8", "fd00::1", "2001:db8::1", "2001:db8:1::1"}
	prefixes := []netip.Prefix{p4("10.0.0.0/24"), p4("10.0.0.0/8"), lan, p4("8.8.8.8/32"), v6, v6h, p4("2001:db8::/32")}
	pick := func() []netip.Prefix { return []netip.Prefix{prefixes[r.IntN(len(prefixes))]} }
	randRule := func() FilterRule {
		var fr FilterRule
		switch r.IntN(6) {
		case 0:
			fr.Src = pick()
		case 1:
			fr.Dst = pick()
		case 2:
			fr.Proto = []uint8{[]uint8{1, 6, 17}[r.IntN(3)]}
		case 3:
			lo := uint16(r.IntN(100))
			fr.DPort = []FilterPorts{{lo, lo + uint16(r.IntN(20))}}
		case 4:
			fr.Mark = []FilterMark{{uint32(r.IntN(4)), 3}}
		case 5:
			fr.Src, fr.Proto = pick(), []uint8{17}
		}
		return fr
	}
	for i := range 300 {
		var accept, deny []FilterRule
		for range r.IntN(3) {
			accept = append(accept, randRule())
		}
		for range r.IntN(3) {
			deny = append(deny, randRule())
		}
		f, err := CompileEventFilter(accept, deny)
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			src, dst := addrs[r.IntN(len(addrs))], addrs[r.IntN(len(addrs))]
			if netip.MustParseAddr(src).Is4() != netip.MustParseAddr(dst).Is4() {
				continue
			}
			fl := Flow{Orig: Tuple{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: []uint8{1, 6, 17}[r.IntN(3)]}, Mark: uint32(r.IntN(4))}
			if fl.Orig.Proto != 1 {
				fl.Orig.SPort, fl.Orig.DPort = uint16(r.IntN(100)+1), uint16(r.IntN(100)+1)
			}
			kept := runFilter(t, f.Program, filterFlow{f: fl}.message(t)) != 0
			if want := matchRules(accept, deny, &fl); kept != want {
				t.Fatalf("set %d (accept %+v, deny %+v), flow %+v: program keeps %v, userspace %v", i, accept, deny, fl, kept, want)
			}
		}
	}
}

func ExampleEventFilter_Summary() {
	f, _ := CompileEventFilter([]FilterRule{{Src: []netip.Prefix{lan}}}, []FilterRule{{Proto: []uint8{17}, DPort: []FilterPorts{{53, 53}}}})
	fmt.Println(f.Summary())
	// Output: 1 deny and 1 accept rules in 127 instructions
}
