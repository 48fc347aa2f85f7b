package ctnl

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

func nested(typ uint16, children ...netfilter.Attribute) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Nested: true, Children: children}
}

func raw(typ uint16, b ...byte) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Data: b}
}

func u16(typ uint16, v uint16) netfilter.Attribute {
	a := netfilter.Attribute{Type: typ}
	a.PutUint16(v)
	return a
}

func u32(typ uint16, v uint32) netfilter.Attribute {
	a := netfilter.Attribute{Type: typ}
	a.PutUint32(v)
	return a
}

func u64(typ uint16, v uint64) netfilter.Attribute {
	a := netfilter.Attribute{Type: typ}
	a.PutUint64(v)
	return a
}

func tuple(typ uint16, src, dst netip.Addr, proto uint8, sport, dport uint16) netfilter.Attribute {
	ipSrc, ipDst := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if src.Is6() {
		ipSrc, ipDst = ctaIPv6Src, ctaIPv6Dst
	}
	protoAttrs := []netfilter.Attribute{raw(ctaProtoNum, proto)}
	if sport != 0 || dport != 0 {
		protoAttrs = append(protoAttrs, u16(ctaProtoSrcPort, sport), u16(ctaProtoDstPort, dport))
	}
	return nested(typ,
		nested(ctaTupleIP, raw(ipSrc, src.AsSlice()...), raw(ipDst, dst.AsSlice()...)),
		nested(ctaTupleProto, protoAttrs...),
	)
}

var (
	cli4 = netip.MustParseAddr("192.0.2.1")
	srv4 = netip.MustParseAddr("198.51.100.7")
	nat4 = netip.MustParseAddr("203.0.113.1")
	cli6 = netip.MustParseAddr("2001:db8::1")
	srv6 = netip.MustParseAddr("2001:db8:1::2")
)

func destroyMessage(t testing.TB, family netfilter.ProtoFamily, attrs ...netfilter.Attribute) netlink.Message {
	t.Helper()
	m, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: msgCTDelete,
		Family:      family,
	}, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var decodeTests = []struct {
	name    string
	family  netfilter.ProtoFamily
	attrs   []netfilter.Attribute
	want    Flow
	wantErr error
}{
	{
		name:   "tcp with snat, accounting and timestamps",
		family: netfilter.ProtoIPv4,
		attrs: []netfilter.Attribute{
			tuple(ctaTupleOrig, cli4, srv4, 6, 40000, 443),
			tuple(ctaTupleReply, srv4, nat4, 6, 443, 61000),
			u32(ctaStatus, 0x1be),
			u32(ctaMark, 0x10),
			u32(ctaID, 12345),
			u16(ctaZone, 7),
			nested(ctaCountersOrig, u64(ctaCountersPackets, 12), u64(ctaCountersBytes, 3400)),
			nested(ctaCountersReply, u64(ctaCountersPackets, 10), u64(ctaCountersBytes, 1<<40)),
			nested(ctaTimestamp, u64(ctaTimestampStart, 1_700_000_000_000_000_000), u64(ctaTimestampStop, 1_700_000_001_500_000_000)),
		},
		want: Flow{
			Family: 4,
			Orig:   Tuple{Src: cli4, Dst: srv4, Proto: 6, SPort: 40000, DPort: 443},
			Reply:  Tuple{Src: srv4, Dst: nat4, Proto: 6, SPort: 443, DPort: 61000},
			Status: 0x1be, Mark: 0x10, ID: 12345, Zone: 7,
			OrigPackets: 12, OrigBytes: 3400, ReplyPackets: 10, ReplyBytes: 1 << 40,
			Start: 1_700_000_000_000_000_000, Stop: 1_700_000_001_500_000_000,
		},
	},
	{
		name:   "udp over ipv6 without accounting",
		family: netfilter.ProtoIPv6,
		attrs: []netfilter.Attribute{
			tuple(ctaTupleOrig, cli6, srv6, 17, 5353, 53),
			tuple(ctaTupleReply, srv6, cli6, 17, 53, 5353),
		},
		want: Flow{
			Family: 6,
			Orig:   Tuple{Src: cli6, Dst: srv6, Proto: 17, SPort: 5353, DPort: 53},
			Reply:  Tuple{Src: srv6, Dst: cli6, Proto: 17, SPort: 53, DPort: 5353},
		},
	},
	{
		name:   "icmp has no ports; 32-bit counters",
		family: netfilter.ProtoIPv4,
		attrs: []netfilter.Attribute{
			tuple(ctaTupleOrig, cli4, srv4, 1, 0, 0),
			tuple(ctaTupleReply, srv4, cli4, 1, 0, 0),
			nested(ctaCountersOrig, u32(ctaCounters32Packets, 4), u32(ctaCounters32Bytes, 336)),
		},
		want: Flow{
			Family:      4,
			Orig:        Tuple{Src: cli4, Dst: srv4, Proto: 1},
			Reply:       Tuple{Src: srv4, Dst: cli4, Proto: 1},
			OrigPackets: 4, OrigBytes: 336,
		},
	},
	{
		name:   "zone inside the tuple",
		family: netfilter.ProtoIPv4,
		attrs: []netfilter.Attribute{
			nested(ctaTupleOrig,
				nested(ctaTupleIP, raw(ctaIPv4Src, cli4.AsSlice()...), raw(ctaIPv4Dst, srv4.AsSlice()...)),
				nested(ctaTupleProto, raw(ctaProtoNum, 17), u16(ctaProtoSrcPort, 1), u16(ctaProtoDstPort, 2)),
				u16(ctaTupleZone, 3)),
		},
		want: Flow{Family: 4, Orig: Tuple{Src: cli4, Dst: srv4, Proto: 17, SPort: 1, DPort: 2}, Zone: 3},
	},
	{
		name:    "no original tuple",
		family:  netfilter.ProtoIPv4,
		attrs:   []netfilter.Attribute{u32(ctaStatus, 1)},
		wantErr: errNoTuple,
	},
	{
		name:    "address of the wrong length",
		family:  netfilter.ProtoIPv4,
		attrs:   []netfilter.Attribute{nested(ctaTupleOrig, nested(ctaTupleIP, raw(ctaIPv4Src, 1, 2, 3)))},
		wantErr: errAddrLength,
	},
	{
		name:    "short counter",
		family:  netfilter.ProtoIPv4,
		attrs:   []netfilter.Attribute{tuple(ctaTupleOrig, cli4, srv4, 6, 1, 2), nested(ctaCountersOrig, raw(ctaCountersPackets, 1, 2))},
		wantErr: errAttribute,
	},
	{
		name:    "unsupported family",
		family:  netfilter.ProtoARP,
		attrs:   []netfilter.Attribute{tuple(ctaTupleOrig, cli4, srv4, 6, 1, 2)},
		wantErr: errBadFamily,
	},
}

func TestDecodeFlow(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			m := destroyMessage(t, tt.family, tt.attrs...)
			var got Flow
			err := decodeFlow(m.Data, &got)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("flow mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeFlowAgreesWithTiMo checks the allocation-free decoder against
// ti-mo/conntrack's on the same valid messages.
func TestDecodeFlowAgreesWithTiMo(t *testing.T) {
	for _, tt := range decodeTests {
		// ti-mo/conntrack does not decode the 32-bit counters old kernels
		// send.
		if tt.wantErr != nil || tt.want.Orig.Proto == 1 {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			m := destroyMessage(t, tt.family, tt.attrs...)
			var ev conntrack.Event
			if err := ev.Unmarshal(m); err != nil {
				t.Fatalf("ti-mo/conntrack: %v", err)
			}
			var got Flow
			if err := decodeFlow(m.Data, &got); err != nil {
				t.Fatal(err)
			}
			f := ev.Flow
			if f.TupleOrig.IP.SourceAddress != got.Orig.Src || f.TupleOrig.IP.DestinationAddress != got.Orig.Dst ||
				f.TupleOrig.Proto.Protocol != got.Orig.Proto || f.TupleOrig.Proto.SourcePort != got.Orig.SPort ||
				f.TupleOrig.Proto.DestinationPort != got.Orig.DPort || f.TupleReply.IP.DestinationAddress != got.Reply.Dst {
				t.Errorf("tuples differ: ti-mo %v / %v, ours %+v / %+v", f.TupleOrig, f.TupleReply, got.Orig, got.Reply)
			}
			if f.CountersOrig.Packets != got.OrigPackets || f.CountersOrig.Bytes != got.OrigBytes ||
				f.CountersReply.Packets != got.ReplyPackets || f.CountersReply.Bytes != got.ReplyBytes {
				t.Errorf("counters differ: ti-mo %v %v, ours %+v", f.CountersOrig, f.CountersReply, got)
			}
			if f.Mark != got.Mark || uint32(f.Status) != got.Status || f.ID != got.ID {
				t.Errorf("mark/status/id differ: ti-mo %d %d %d, ours %d %d %d", f.Mark, f.Status, f.ID, got.Mark, got.Status, got.ID)
			}
			if !f.Timestamp.Start.IsZero() && f.Timestamp.Start.UnixNano() != got.Start {
				t.Errorf("start differs: ti-mo %v, ours %d", f.Timestamp.Start, got.Start)
			}
		})
	}
}

func TestNextMessage(t *testing.T) {
	m := destroyMessage(t, netfilter.ProtoIPv4, tuple(ctaTupleOrig, cli4, srv4, 6, 1, 2))
	m.Header.Length = uint32(nlwire.HeaderLen + len(m.Data))
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	two := append(append([]byte{}, b...), b...)
	var n int
	for rest := two; len(rest) > 0; {
		var msg nlwire.Message
		msg, rest, err = nextMessage(rest)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type != uint16(netfilter.NFSubsysCTNetlink)<<8|msgCTDelete {
			t.Errorf("type = %#x", msg.Type)
		}
		n++
	}
	if n != 2 {
		t.Errorf("found %d messages, want 2", n)
	}
	if _, _, err := nextMessage(b[:len(b)-1]); !errors.Is(err, errTruncated) {
		t.Errorf("truncated message: error = %v, want errTruncated", err)
	}
}

func BenchmarkDecodeFlow(b *testing.B) {
	m := destroyMessage(b, netfilter.ProtoIPv4, decodeTests[0].attrs...)
	var f Flow
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Data)))
	for i := 0; i < b.N; i++ {
		if err := decodeFlow(m.Data, &f); err != nil {
			b.Fatal(err)
		}
	}
}
