package ctnl

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/fuzztest"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netlinktest"
	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// The fuzz targets of the kernel's input to ctnl: DESTROY events and dump
// entries (decodeFlow), the datagrams the listener walks (decodeDatagram)
// and the statistics replies (eachBE32).

// errorsOfDecodeFlow are the errors decodeFlow may return, wrapped.
var errorsOfDecodeFlow = []error{errTruncated, errAttribute, errNoTuple, errBadFamily, errAddrLength}

// isOneOf reports whether err is one of want.
func isOneOf(err error, want []error) bool {
	for _, w := range want {
		if errors.Is(err, w) {
			return true
		}
	}
	return false
}

// encodeTuple writes t as the kernel does, every field of it, so that it
// decodes to t again.
func encodeTuple(typ uint16, t Tuple) netfilter.Attribute {
	var ip []netfilter.Attribute
	for i, a := range []netip.Addr{t.Src, t.Dst} {
		switch {
		case a.Is4():
			ip = append(ip, raw(uint16(ctaIPv4Src+i), a.AsSlice()...))
		case a.Is6():
			ip = append(ip, raw(uint16(ctaIPv6Src+i), a.AsSlice()...))
		}
	}
	return nested(typ,
		nested(ctaTupleIP, ip...),
		nested(ctaTupleProto, raw(ctaProtoNum, t.Proto), u16(ctaProtoSrcPort, t.SPort), u16(ctaProtoDstPort, t.DPort),
			u16(ctaProtoICMPID, t.ICMPID), raw(ctaProtoICMPType, t.ICMPType), raw(ctaProtoICMPCode, t.ICMPCode)))
}

// encodeFlow writes f as a DESTROY event's payload, every field of it.
func encodeFlow(t testing.TB, f Flow) []byte {
	family := netfilter.ProtoIPv4
	if f.Family == 6 {
		family = netfilter.ProtoIPv6
	}
	return destroyMessage(t, family,
		encodeTuple(ctaTupleOrig, f.Orig),
		encodeTuple(ctaTupleReply, f.Reply),
		u32(ctaStatus, f.Status), u32(ctaMark, f.Mark), u32(ctaID, f.ID), u16(ctaZone, f.Zone),
		nested(ctaProtoInfo, nested(ctaProtoInfoTCP, raw(ctaProtoInfoTCPState, f.TCPState))),
		nested(ctaCountersOrig, u64(ctaCountersPackets, f.OrigPackets), u64(ctaCountersBytes, f.OrigBytes)),
		nested(ctaCountersReply, u64(ctaCountersPackets, f.ReplyPackets), u64(ctaCountersBytes, f.ReplyBytes)),
		nested(ctaTimestamp, u64(ctaTimestampStart, uint64(f.Start)), u64(ctaTimestampStop, uint64(f.Stop))),
	).Data
}

// addFlowSeeds adds the payloads of the decoder's test cases, and of a flow
// with every field set, to f's corpus.
func addFlowSeeds(f *testing.F) {
	for _, tt := range decodeTests {
		f.Add(destroyMessage(f, tt.family, tt.attrs...).Data)
	}
	f.Add(encodeFlow(f, Flow{Family: 6,
		Orig:  Tuple{Src: cli6, Dst: srv6, Proto: 58, ICMPID: 9, ICMPType: 128},
		Reply: Tuple{Src: srv6, Dst: cli6, Proto: 58, ICMPID: 9, ICMPType: 129},
		Zone:  1, Mark: 2, Status: 3, ID: 4, TCPState: 5, OrigPackets: 6, OrigBytes: 7, ReplyPackets: 8, ReplyBytes: 9,
		Start: 10, Stop: 11}))
}

// FuzzDecodeFlow decodes any bytes as a ctnetlink message's payload: an
// error is one of the decoder's (errors.Is), a flow it decodes has a family
// of 4 or 6 and, written again with every field, decodes to the same flow,
// and decoding allocates in proportion to the input at most. The bytes are
// walked as a datagram too: a walk that stops says errTruncated.
func FuzzDecodeFlow(f *testing.F) {
	addFlowSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var fl Flow
		var err error
		fuzztest.Bounded(t, len(b), func() { err = decodeFlow(b, &fl) })
		if err != nil {
			if !isOneOf(err, errorsOfDecodeFlow) {
				t.Fatalf("decodeFlow: %v, not one of the decoder's errors", err)
			}
		} else {
			if fl.Family != 4 && fl.Family != 6 {
				t.Fatalf("decoded family %d", fl.Family)
			}
			var again Flow
			if err := decodeFlow(encodeFlow(t, fl), &again); err != nil {
				t.Fatalf("%+v written again does not decode: %v", fl, err)
			}
			if again != fl {
				t.Fatalf("%+v written again decodes to %+v", fl, again)
			}
		}
		for rest := b; len(rest) > 0; {
			if _, rest, err = nextMessage(rest); err != nil {
				if !errors.Is(err, errTruncated) {
					t.Fatalf("nextMessage: %v, want errTruncated", err)
				}
				break
			}
		}
	})
}

// FuzzDecodeDatagram gives any bytes to the listener as one received
// datagram: it delivers, in order, the decoding of each DESTROY event the
// datagram's messages hold, and counts as an error every other message but
// the netlink control messages, each event that does not decode and a
// malformed rest; it delivers no more flows than the datagram has room for
// messages, and allocates in proportion to the datagram at most.
func FuzzDecodeDatagram(f *testing.F) {
	var all []netlink.Message
	for _, tt := range decodeTests {
		all = append(all, destroyMessage(f, tt.family, tt.attrs...))
	}
	f.Add(netlinktest.Datagram(all...))
	update := destroyMessage(f, netfilter.ProtoIPv4, decodeTests[0].attrs...)
	update.Header.Type = netlink.HeaderType(subsysCT<<8 | msgCTNew)
	done := netlink.Message{Header: netlink.Header{Type: netlink.Done}, Data: make([]byte, 4)}
	d := netlinktest.Datagram(all[0], update, done, all[1])
	f.Add(d)
	f.Add(d[:len(d)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		l := &Listener{flows: make([]Flow, 0, 4)}
		fuzztest.Bounded(t, len(b), func() {
			l.flows = l.flows[:0]
			l.decodeErrors.Store(0)
			l.decodeDatagram(b)
		})
		var want []Flow
		var errs uint64
		for rest := b; len(rest) > 0; {
			m, r, ok := nlwire.NextMessage(rest)
			if !ok {
				errs++
				break
			}
			rest = r
			switch {
			case m.Type == subsysCT<<8|msgCTDelete:
				var fl Flow
				if err := decodeFlow(m.Payload, &fl); err != nil {
					errs++
				} else {
					want = append(want, fl)
				}
			case m.Type >= 16:
				errs++
			}
		}
		if len(l.flows) != len(want) || l.decodeErrors.Load() != errs {
			t.Fatalf("%d flows and %d errors, want %d and %d", len(l.flows), l.decodeErrors.Load(), len(want), errs)
		}
		for i := range want {
			if l.flows[i] != want[i] {
				t.Fatalf("flow %d: %+v, want %+v", i, l.flows[i], want[i])
			}
		}
		if most := len(b) / (nlwire.HeaderLen + nlwire.NfgenLen); len(l.flows) > most {
			t.Fatalf("%d flows from %d bytes", len(l.flows), len(b))
		}
	})
}

// FuzzEachBE32 decodes any bytes as a statistics reply's payload: an error
// is errTruncated or errAttribute, every value comes from an attribute of
// at least 8 bytes within the input, and the values written again as
// attributes decode to the same types and values.
func FuzzEachBE32(f *testing.F) {
	for _, as := range [][]netfilter.Attribute{
		{u32(ctaStatsGlobalEntries, 12), u32(ctaStatsGlobalMaxEntries, 262144)},
		{u32(ctaStatsFound, 1), u32(ctaStatsInvalid, 5), u32(ctaStatsInsert, 9), u32(ctaStatsDrop, 3), u32(ctaStatsChainTooLong, 1<<31)},
		{raw(ctaStatsDrop, 1, 2)},
	} {
		b, err := netfilter.MarshalAttributes(as)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{0, 0, 0, 0}, b...))
	}
	type value struct {
		typ uint16
		v   uint32
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got []value
		var err error
		fuzztest.Bounded(t, len(b), func() {
			got = got[:0]
			err = eachBE32(b, func(typ uint16, v uint32) { got = append(got, value{typ, v}) })
		})
		if most := max(len(b)-nlwire.NfgenLen, 0) / 8; len(got) > most {
			t.Fatalf("%d values from %d bytes", len(got), len(b))
		}
		if err != nil {
			if !errors.Is(err, errTruncated) && !errors.Is(err, errAttribute) {
				t.Fatalf("eachBE32: %v, want errTruncated or errAttribute", err)
			}
			return
		}
		as := make([]netfilter.Attribute, len(got))
		for i, v := range got {
			as[i] = u32(v.typ, v.v)
		}
		again, err := netfilter.MarshalAttributes(as)
		if err != nil {
			t.Fatal(err)
		}
		var got2 []value
		if err := eachBE32(append([]byte{0, 0, 0, 0}, again...), func(typ uint16, v uint32) { got2 = append(got2, value{typ, v}) }); err != nil {
			t.Fatalf("the values written again do not decode: %v", err)
		}
		if len(got2) != len(got) {
			t.Fatalf("%d values written again decode to %d", len(got), len(got2))
		}
		for i := range got {
			if got2[i] != got[i] {
				t.Fatalf("value %d: %+v written again decodes to %+v", i, got[i], got2[i])
			}
		}
	})
}

// FuzzDumpDatagram gives any bytes, cut in two datagrams at cut, to a
// Dumper as the answer to table dump request 1, with batches of 4 entries:
// fn receives, in order and in full batches until the answer's end, the
// decoding of each entry of the request the datagrams hold, and
// DumpStats.Entries counts them; the dump is marked filtered when one of
// them is. Until the answer's end an error is errTruncated; the end's is
// an errno the kernel sent, or errTruncated. Reading allocates in
// proportion to the input at most.
func FuzzDumpDatagram(f *testing.F) {
	entry := func(seq uint32, flags netlink.HeaderFlags, tt int) netlink.Message {
		m := destroyMessage(f, decodeTests[tt].family, decodeTests[tt].attrs...)
		m.Header.Type = netlink.HeaderType(subsysCT<<8 | msgCTNew)
		m.Header.Sequence, m.Header.Flags = seq, flags|netlink.Multi
		return m
	}
	done := netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: 1}, Data: make([]byte, 4)}
	refused := netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: 1}, Data: []byte{0xff, 0xff, 0xff, 0xff}} // -EPERM
	// An acknowledgement, which the kernel does not send for a dump
	// request (it asks for none), after entries: they were counted but
	// never handed to fn.
	ack := netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: 1}, Data: make([]byte, 4)}
	var entries []netlink.Message
	for i := range decodeTests {
		entries = append(entries, entry(1, 0, i))
	}
	for _, d := range [][]byte{
		netlinktest.Datagram(append(entries, done)...),
		netlinktest.Datagram(entry(7, 0, 0), entry(1, nlmFDumpFiltered, 1), entry(1, nlmFDumpFiltered, 2), done),
		netlinktest.Datagram(entry(1, 0, 0), refused),
		netlinktest.Datagram(entry(1, 0, 0), entry(1, 0, 1), ack),
	} {
		f.Add(d, uint16(len(d)))
		f.Add(d, uint16(len(d)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		c := min(int(cut), len(b))
		datagrams := [][]byte{b[:c], b[c:]}
		d := &Dumper{flows: make([]Flow, 0, 4)}
		var got []Flow
		var st DumpStats
		var done bool
		var err error
		fuzztest.Bounded(t, len(b), func() {
			d.flows, got, st = d.flows[:0], got[:0], DumpStats{}
			for _, dg := range datagrams {
				done, err = d.datagram(dg, 1, &st, func(fl []Flow) error {
					if len(fl) == 0 || len(fl) > 4 {
						t.Fatalf("a batch of %d entries", len(fl))
					}
					got = append(got, fl...)
					return nil
				})
				if done || err != nil {
					return
				}
			}
		})
		var want []Flow
		var filtered, ended bool
	walk:
		for _, dg := range datagrams {
			for rest := dg; len(rest) > 0; {
				m, r, ok := nlwire.NextMessage(rest)
				if !ok {
					break walk
				}
				rest = r
				switch {
				case m.Seq != 1:
				case m.Type == nlwire.TypeDone || m.Type == nlwire.TypeError:
					ended = true
					break walk
				case m.Type == subsysCT<<8|msgCTNew:
					filtered = filtered || m.Flags&nlmFDumpFiltered != 0
					var fl Flow
					if decodeFlow(m.Payload, &fl) == nil {
						want = append(want, fl)
					}
				}
			}
		}
		if done != ended || st.Filtered != filtered || st.Entries != len(want) {
			t.Fatalf("done %v, filtered %v, %d entries; want %v, %v, %d", done, st.Filtered, st.Entries, ended, filtered, len(want))
		}
		// Before the end, fn has the full batches and the rest waits in
		// d.flows; at an end without an error, fn has every entry.
		switch {
		case !done && (len(got)+len(d.flows) != len(want) || len(got)%4 != 0):
			t.Fatalf("before the end, fn received %d entries and %d wait, want %d in all, in batches of 4", len(got), len(d.flows), len(want))
		case done && err == nil && len(got) != len(want):
			t.Fatalf("at the end, fn received %d entries, want %d", len(got), len(want))
		case len(got) > len(want):
			t.Fatalf("fn received %d entries, want %d at most", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("entry %d: %+v, want %+v", i, got[i], want[i])
			}
		}
		var errno unix.Errno
		if err != nil && !errors.Is(err, errTruncated) && (!done || !errors.As(err, &errno)) {
			t.Fatalf("done %v: %v, want errTruncated or, at the end, an errno", done, err)
		}
	})
}
