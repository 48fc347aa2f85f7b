package nflog

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// attr builds one netlink attribute, padded.
func attr(typ uint16, v []byte) []byte {
	return appendAttr(nil, typ, v)
}

func be32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// message builds a whole NFULNL_MSG_PACKET netlink message.
func message(family uint8, group uint16, attrs ...[]byte) []byte {
	b := make([]byte, 16, 256)
	binary.NativeEndian.PutUint16(b[4:], typePacket)
	b = append(b, family, 0)
	b = binary.BigEndian.AppendUint16(b, group)
	for _, a := range attrs {
		b = append(b, a...)
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

// hdr is NFULA_PACKET_HDR.
func hdr(proto uint16, hook uint8) []byte {
	return attr(attrPacketHdr, []byte{byte(proto >> 8), byte(proto), hook, 0})
}

func ipv4(proto uint8, total uint16, frag uint16, src, dst string, l4 ...byte) []byte {
	b := make([]byte, 20)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], total)
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8], b[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, l4...)
}

func ipv6(next uint8, plen uint16, src, dst string, rest ...byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], plen)
	b[6], b[7] = next, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, rest...)
}

func prefix(s string) []byte { return attr(attrPrefix, append([]byte(s), 0)) }

var decodeTests = []struct {
	name string
	msg  []byte
	want Packet
	err  error
}{
	{
		name: "nft IPv4 TCP with prefix",
		msg: message(afINET, 5, hdr(ethIPv4, 1), attr(attrMark, be32(0x10)), attr(attrInDev, be32(3)),
			prefix("ssh-attempt "), attr(attrSeq, be32(7)), attr(attrSeqGlobal, be32(70)),
			attr(attrPayload, ipv4(protoTCP, 60, 0x4000, "192.0.2.1", "192.0.2.2", 0xc3, 0x50, 0, 22, 1, 2, 3, 4))),
		want: Packet{Group: 5, Family: afINET, Hook: 1, HWProtocol: ethIPv4, Prefix: []byte("ssh-attempt "), Mark: 0x10, InDev: 3,
			Seq: 7, HasSeq: true, SeqGlobal: 70, HasSeqGlobal: true, Length: 60, Proto: protoTCP,
			Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPort: 50000, DPort: 22},
	},
	{
		name: "iptables IPv4 UDP output, no prefix",
		msg: message(afINET, 7, hdr(ethIPv4, 3), attr(attrOutDev, be32(4)), attr(attrSeq, be32(0)),
			attr(attrPayload, ipv4(protoUDP, 128, 0, "192.0.2.2", "192.0.2.1", 0x23, 0x28, 0x04, 0xd2))),
		want: Packet{Group: 7, Family: afINET, Hook: 3, HWProtocol: ethIPv4, OutDev: 4, HasSeq: true, Length: 128, Proto: protoUDP,
			Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("192.0.2.1"), SPort: 9000, DPort: 1234},
	},
	{
		name: "IPv4 later fragment has no ports",
		msg:  message(afINET, 1, attr(attrPayload, ipv4(protoUDP, 1500, 185, "10.0.0.1", "10.0.0.2", 1, 2, 3, 4))),
		want: Packet{Group: 1, Family: afINET, Length: 1500, Proto: protoUDP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")},
	},
	{
		name: "IPv4 ICMP",
		msg:  message(afINET, 1, attr(attrPayload, ipv4(1, 84, 0, "10.0.0.1", "10.0.0.2", 8, 0, 0, 0))),
		want: Packet{Group: 1, Family: afINET, Length: 84, Proto: 1, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")},
	},
	{
		name: "IPv4 header cut short by the copy range",
		msg:  message(afINET, 1, attr(attrPayload, ipv4(protoTCP, 60, 0, "10.0.0.1", "10.0.0.2")[:12])),
		want: Packet{Group: 1, Family: afINET},
	},
	{
		name: "IPv6 UDP after a hop-by-hop header",
		msg: message(afINET6, 6, hdr(ethIPv6, 0), prefix("v6 "),
			attr(attrPayload, ipv6(0, 16, "2001:db8::1", "2001:db8::2", protoUDP, 0, 1, 4, 0, 0, 0, 0, 0x00, 0x35, 0x23, 0x29))),
		want: Packet{Group: 6, Family: afINET6, HWProtocol: ethIPv6, Prefix: []byte("v6 "), Length: 56, Proto: protoUDP,
			Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SPort: 53, DPort: 9001},
	},
	{
		name: "IPv6 later fragment",
		msg: message(afINET6, 6, attr(attrPayload, ipv6(44, 1240, "2001:db8::1", "2001:db8::2",
			protoUDP, 0, 0x05, 0x00, 0, 0, 0, 1, 0x00, 0x35, 0x23, 0x29))),
		want: Packet{Group: 6, Family: afINET6, Length: 1280, Proto: protoUDP,
			Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2")},
	},
	{
		name: "bridge family, no payload",
		msg:  message(7, 2, hdr(0x0806, 0), prefix("arp")),
		want: Packet{Group: 2, Family: 7, HWProtocol: 0x0806, Prefix: []byte("arp")},
	},
	{
		name: "prefix without its NUL",
		msg:  message(afINET, 1, attr(attrPrefix, []byte("abc"))),
		want: Packet{Group: 1, Family: afINET, Prefix: []byte("abc")},
	},
	{
		name: "short sequence attribute",
		msg:  message(afINET, 1, attr(attrSeq, []byte{1, 2})),
		err:  errAttribute,
	},
	{
		name: "short packet header",
		msg:  message(afINET, 1, attr(attrPacketHdr, []byte{8})),
		err:  errAttribute,
	},
	{
		name: "attribute longer than the message",
		msg:  append(message(afINET, 1), 0x20, 0, 1, 0),
		err:  errAttribute,
	},
}

func TestDecode(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg
			if tt.err != nil && len(m) > 20 && binary.NativeEndian.Uint32(m) != uint32(len(m)) {
				binary.NativeEndian.PutUint32(m, uint32(len(m))) // the malformed tail is inside the message
			}
			var p Packet
			err := Decode(binary.NativeEndian.Uint16(m[4:]), m[16:], &p)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, p, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("packet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRefusesOtherTypes(t *testing.T) {
	var p Packet
	if err := Decode(typeConfig, make([]byte, 4), &p); !errors.Is(err, errNotPacket) {
		t.Errorf("config message: error = %v, want %v", err, errNotPacket)
	}
	if err := Decode(typePacket, []byte{2, 0}, &p); !errors.Is(err, errTruncated) {
		t.Errorf("short message: error = %v, want %v", err, errTruncated)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	m := decodeTests[0].msg
	var p Packet
	if n := testing.AllocsPerRun(100, func() { _ = Decode(typePacket, m[16:], &p) }); n != 0 {
		t.Errorf("Decode allocates %v times per message", n)
	}
}

// listenerFor returns a Listener with no socket for groups, to feed
// datagrams by hand.
func listenerFor(groups ...uint16) *Listener {
	l := &Listener{packets: make([]Packet, 0, 4)}
	l.groups = make([]group, len(groups))
	for i, g := range groups {
		l.groups[i].id = g
	}
	return l
}

func seqMessage(group uint16, seq uint32) []byte {
	return message(afINET, group, hdr(ethIPv4, 1), attr(attrSeq, be32(seq)), attr(attrPayload, ipv4(protoUDP, 100, 0, "10.0.0.1", "10.0.0.2", 0, 1, 0, 2)))
}

func TestSequenceGapsAreLoss(t *testing.T) {
	l := listenerFor(5, 6)
	var got int
	count := func(ps []Packet) { got += len(ps) }
	var d []byte
	for _, s := range []uint32{0, 1, 4, 5} { // 2 and 3 lost
		d = append(d, seqMessage(5, s)...)
	}
	d = append(d, seqMessage(6, 3)...) // 0-2 lost at the start
	d = append(d, seqMessage(9, 0)...) // not ours: handed on, not counted
	l.datagram(d, count)
	l.datagram(append(seqMessage(5, 9), seqMessage(6, 4)...), count) // 6-8 lost
	l.datagram([]byte{1, 2, 3}, count)
	if got != 8 {
		t.Errorf("fn got %d packets, want 8", got)
	}
	want := []GroupStats{{Group: 5, Received: 5, Lost: 5}, {Group: 6, Received: 2, Lost: 3}}
	for i, w := range want {
		g := &l.groups[i]
		if g := (GroupStats{Group: g.id, Received: g.received.Load(), Lost: g.lost.Load()}); g != w {
			t.Errorf("group %d: %+v, want %+v", w.Group, g, w)
		}
	}
	if n := l.decodeErrors.Load(); n != 1 {
		t.Errorf("decode errors = %d, want 1", n)
	}
}

func TestSequenceWraps(t *testing.T) {
	l := listenerFor(1)
	l.groups[0].next = 1<<32 - 2
	l.datagram(append(seqMessage(1, 1<<32-1), seqMessage(1, 1)...), func([]Packet) {})
	if lost := l.groups[0].lost.Load(); lost != 2 { // 1<<32-2 and 0
		t.Errorf("lost = %d, want 2", lost)
	}
}

func TestConfigRequest(t *testing.T) {
	cfg := &Config{}
	b := configRequest(nil, 9, 0x0105, cmdBind, cfg)
	m, rest, ok := nlwireNext(b)
	if !ok || len(rest) != 0 {
		t.Fatalf("not one whole message: %x", b)
	}
	if m.typ != typeConfig || m.seq != 9 {
		t.Errorf("type %#x seq %d", m.typ, m.seq)
	}
	if g := binary.BigEndian.Uint16(m.payload[2:]); g != 0x0105 {
		t.Errorf("res_id = %#x", g)
	}
	attrs := map[uint16][]byte{}
	for a := m.payload[4:]; len(a) > 0; {
		l := int(binary.NativeEndian.Uint16(a))
		attrs[binary.NativeEndian.Uint16(a[2:])] = a[4:l]
		a = a[(l+3)&^3:]
	}
	want := map[uint16][]byte{
		attrCfgCmd:      {cmdBind},
		attrCfgMode:     {0, 0, 0, DefaultCopyRange, copyPacket, 0},
		attrCfgNlBufSiz: be32(DefaultBatchSize),
		attrCfgTimeout:  be32(10),
		attrCfgQThresh:  be32(DefaultQueueThreshold),
		attrCfgFlags:    {0, flagSeq | flagSeqGlobal},
	}
	if diff := cmp.Diff(want, attrs); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
}

type rawMessage struct {
	typ     uint16
	seq     uint32
	payload []byte
}

func nlwireNext(b []byte) (rawMessage, []byte, bool) {
	if len(b) < 16 {
		return rawMessage{}, nil, false
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l > len(b) {
		return rawMessage{}, nil, false
	}
	return rawMessage{binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:]), b[16:l]}, b[l:], true
}

func FuzzDecode(f *testing.F) {
	for _, tt := range decodeTests {
		f.Add(tt.msg)
	}
	f.Add(append(seqMessage(5, 0), seqMessage(5, 3)...))
	f.Fuzz(func(t *testing.T, d []byte) {
		l := listenerFor(1, 5)
		l.datagram(d, func(ps []Packet) {
			for i := range ps {
				p := &ps[i]
				if p.SPort != 0 && !p.Src.IsValid() {
					t.Fatalf("ports without addresses: %+v", p)
				}
			}
		})
	})
}

func TestInvalidReason(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"nf_ct_proto_6: invalid tcp flag combination ", "invalid tcp flag combination", true},
		{"nf_ct_proto_6: SEQ is over upper bound 1027999487 (over the window of the receiver) ", "SEQ is over upper bound N (over the window of the receiver)", true},
		{"nf_ct_proto_6: packet (index 0) in dir 0 ignored, state CLOSE_WAIT ", "packet (index N) in dir N ignored, state CLOSE_WAIT", true},
		{"nf_ct_ftp: dropping packet ", "dropping packet", true},
		{"ssh-attempt ", "", false},
		{"nf_ct", "", false},
	} {
		got, ok := InvalidReason(nil, []byte(tt.in))
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("%q: %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	buf := make([]byte, 0, 128)
	p := []byte("nf_ct_proto_6: SEQ is over upper bound 1027999487 (over the window of the receiver) ")
	if n := testing.AllocsPerRun(100, func() { buf, _ = InvalidReason(buf[:0], p) }); n != 0 {
		t.Errorf("InvalidReason allocates %v times", n)
	}
}

// benchDatagram is a datagram of 256 packet messages as the kernel
// batches them for an nft log rule on a veth input: the attributes of a
// real message, in its order (hardware address, type, length and header,
// and a timestamp, which the decoder skips).
func benchDatagram() []byte {
	var d []byte
	for i := range 256 {
		d = append(d, message(afINET, 5, hdr(ethIPv4, 1), prefix("burst "), attr(attrInDev, be32(2)),
			attr(8, make([]byte, 12)), attr(15, []byte{0, 1}), attr(17, []byte{0, 14}), attr(16, make([]byte, 14)),
			attr(3, make([]byte, 16)), attr(attrSeq, be32(uint32(i))), attr(attrSeqGlobal, be32(uint32(i))),
			attr(attrPayload, ipv4(protoUDP, 92, 0, "198.18.0.1", "198.18.0.2", 0xc3, 0x50, 0x27, 0x0f, 0, 72, 0, 0)))...)
	}
	return d
}

// BenchmarkDatagram decodes a datagram of 256 packet messages, as the
// kernel batches them, and accounts their sequence numbers.
func BenchmarkDatagram(b *testing.B) {
	l := listenerFor(5)
	l.packets = make([]Packet, 0, 256)
	d := benchDatagram()
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		l.groups[0].next = 0
		l.datagram(d, func([]Packet) {})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/packet")
}

// layoutMessages are messages decoded one after the other with one layout:
// runs of one shape, payloads of other lengths, and shapes the layout must
// not take for the remembered one.
func layoutMessages() [][]byte {
	real := func(seq uint32, prefixText string, payload []byte) []byte {
		return message(afINET, 5, hdr(ethIPv4, 1), prefix(prefixText), attr(attrInDev, be32(2)),
			attr(8, make([]byte, 12)), attr(attrSeq, be32(seq)), attr(attrSeqGlobal, be32(seq+7)),
			attr(attrPayload, payload))
	}
	udp := ipv4(protoUDP, 92, 0, "198.18.0.1", "198.18.0.2", 0xc3, 0x50, 0x27, 0x0f, 0, 72, 0, 0)
	ms := [][]byte{real(1, "burst ", udp), real(2, "burst ", udp), real(3, "burst ", udp[:21]),
		real(4, "burst ", udp[:3]), real(5, "burst ", nil), real(6, "burst ", udp), real(7, "other rule ", udp),
		real(8, "burst ", ipv6(protoTCP, 20, "2001:db8::1", "2001:db8::2", 0x01, 0xbb, 0x30, 0x39)),
		message(afINET, 5, hdr(ethIPv4, 1), attr(attrPayload, udp), attr(attrSeq, be32(9))),
		message(afINET, 5, hdr(ethIPv4, 1), attr(attrPayload, udp), attr(attrPayload, udp[:20])),
		real(10, "burst ", udp)}
	for _, tt := range decodeTests {
		ms = append(ms, tt.msg, real(11, "burst ", udp))
	}
	// The last message again, cut short and made longer than its payload
	// says.
	last := ms[len(ms)-1]
	cut := append([]byte(nil), last[:len(last)-8]...)
	binary.NativeEndian.PutUint32(cut, uint32(len(cut)))
	long := append(append([]byte(nil), last...), 0, 0, 0, 0, 8, 0, 1, 0)
	binary.NativeEndian.PutUint32(long, uint32(len(long)))
	return append(ms, cut, last, long, last)
}

// decodeWithLayout decodes each message with one layout, and each on its
// own with Decode, and fails on the first difference.
func decodeWithLayout(t *testing.T, ms [][]byte) {
	var lo layout
	for i, m := range ms {
		if len(m) < 16 || int(binary.NativeEndian.Uint32(m)) != len(m) {
			continue
		}
		var got, want Packet
		gotErr := lo.decode(m[16:], &got)
		wantErr := Decode(typePacket, m[16:], &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("message %d: error %v with the layout, %v without", i, gotErr, wantErr)
		}
		if gotErr != nil {
			continue
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Fatalf("message %d decoded with the layout (-Decode +layout):\n%s", i, diff)
		}
	}
}

func TestLayoutDecodesAsDecode(t *testing.T) {
	ms := layoutMessages()
	decodeWithLayout(t, ms)
	// The layout is used for a run of one shape.
	var lo layout
	var p Packet
	m := ms[0]
	if err := lo.decode(m[16:], &p); err != nil || lo.n == 0 {
		t.Fatalf("no layout remembered from %x: %v", m, err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = lo.decode(m[16:], &p) }); n != 0 {
		t.Errorf("decoding by the layout allocates %v times per message", n)
	}
}

func FuzzLayout(f *testing.F) {
	ms := layoutMessages()
	for i := range ms[1:] {
		f.Add(ms[i], ms[i+1])
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, m := range [][]byte{a, b} {
			if len(m) >= 16 {
				binary.NativeEndian.PutUint32(m, uint32(len(m)))
			}
		}
		decodeWithLayout(t, [][]byte{a, b, a, b})
	})
}
