package nlwire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ti-mo/netfilter"

	"github.com/netfilter-exporter/netfilter_exporter/internal/fuzztest"
)

// seedAttributes are attribute lists as the kernel sends them: flat, nested
// (with NLA_F_NESTED set, as ti-mo/netfilter sets it), unpadded at the end,
// and empty.
func seedAttributes(f *testing.F) [][]byte {
	b, err := netfilter.MarshalAttributes([]netfilter.Attribute{
		{Type: 1, Data: []byte("filter\x00")},
		{Type: 2, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Data: []byte{192, 0, 2, 1}},
			{Type: 2, Data: []byte{198, 51, 100, 7}},
		}},
		{Type: 3, Data: []byte{0, 0, 0, 0, 0, 0, 0x0d, 0x48}},
	})
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{
		b,
		append(attr(0x8001, []byte("abc")), attr(7, []byte{1, 2, 3, 4})...),
		attr(2, []byte{9})[:5],
		{},
	}
}

// walkAttrs splits b into attributes with NextAttr, checking each step, and
// returns their types and values; ok is false when b ends in a malformed
// attribute. Below depth, values are walked as nested attributes too.
func walkAttrs(t *testing.T, b []byte, depth int) (types []uint16, vals [][]byte, ok bool) {
	for len(b) > 0 {
		typ, val, rest, ok := NextAttr(b)
		if !ok {
			l := 0
			if len(b) >= 2 {
				l = int(binary.NativeEndian.Uint16(b))
			}
			if len(b) >= AttrHeaderLen && l >= AttrHeaderLen && l <= len(b) {
				t.Fatalf("NextAttr refused a whole attribute: length %d with %d bytes left", l, len(b))
			}
			if AttrProblem(b) == "" {
				t.Fatal("AttrProblem is empty")
			}
			return types, vals, false
		}
		l := int(binary.NativeEndian.Uint16(b))
		if l < AttrHeaderLen || l > len(b) {
			t.Fatalf("NextAttr took an attribute of length %d with %d bytes left", l, len(b))
		}
		if want := binary.NativeEndian.Uint16(b[2:]) & attrTypeMask; typ != want {
			t.Fatalf("type %#x, want %#x", typ, want)
		}
		// The value is the attribute's bytes, in place; the rest starts
		// after its padding or at the end of b.
		if len(val) != l-AttrHeaderLen || (len(val) > 0 && &val[0] != &b[AttrHeaderLen]) {
			t.Fatalf("value of %d bytes for length %d, or not in place", len(val), l)
		}
		next := min((l+3)&^3, len(b))
		if len(rest) != len(b)-next || (len(rest) > 0 && &rest[0] != &b[next]) {
			t.Fatalf("rest of %d bytes after an attribute of length %d with %d bytes left", len(rest), l, len(b))
		}
		if depth > 0 {
			walkAttrs(t, val, depth-1)
		}
		types, vals = append(types, typ), append(vals, val)
		b = rest
	}
	return types, vals, true
}

// FuzzNextAttr walks any bytes as a list of attributes, and the values as
// nested lists: every attribute NextAttr returns lies within the buffer,
// with the length its header says, and every step moves on; a list that
// walks to its end, written again attribute by attribute, walks to the same
// types and values; and a walk allocates in proportion to the input at
// most.
func FuzzNextAttr(f *testing.F) {
	for _, b := range seedAttributes(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzztest.Bounded(t, len(b), func() { walkAttrs(t, b, 3) })
		types, vals, ok := walkAttrs(t, b, 0)
		if !ok {
			return
		}
		var again []byte
		for i := range types {
			again = append(again, attr(types[i], vals[i])...)
		}
		types2, vals2, ok := walkAttrs(t, again, 0)
		if !ok || len(types2) != len(types) {
			t.Fatalf("the re-encoded list walks to %d attributes (ok %v), want %d", len(types2), ok, len(types))
		}
		for i := range types {
			if types2[i] != types[i] || !bytes.Equal(vals2[i], vals[i]) {
				t.Fatalf("attribute %d: %d %x after re-encoding, want %d %x", i, types2[i], vals2[i], types[i], vals[i])
			}
		}
		for _, v := range vals {
			s := CString(v)
			if len(s) > 0 && &s[0] != &v[0] || bytes.IndexByte(s, 0) >= 0 || (len(s) < len(v) && v[len(s)] != 0) {
				t.Fatalf("CString(%q) = %q, want what precedes the first NUL", v, s)
			}
		}
	})
}

// msg builds one netlink message, padded to 4 bytes.
func msg(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, HeaderLen, HeaderLen+len(payload)+3)
	binary.NativeEndian.PutUint32(b, uint32(HeaderLen+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// walkMessages splits b into messages with NextMessage, checking each
// step; ok is false when b ends in a malformed message.
func walkMessages(t *testing.T, b []byte) (msgs []Message, ok bool) {
	for len(b) > 0 {
		m, rest, ok := NextMessage(b)
		if !ok {
			if len(b) >= HeaderLen {
				if l := binary.NativeEndian.Uint32(b); l >= HeaderLen && int64(l) <= int64(len(b)) {
					t.Fatalf("NextMessage refused a whole message: length %d with %d bytes left", l, len(b))
				}
			}
			if Problem(b) == "" {
				t.Fatal("Problem is empty")
			}
			return msgs, false
		}
		l := int64(binary.NativeEndian.Uint32(b))
		if l < HeaderLen || l > int64(len(b)) {
			t.Fatalf("NextMessage took a message of length %d with %d bytes left", l, len(b))
		}
		if m.Type != binary.NativeEndian.Uint16(b[4:]) || m.Flags != binary.NativeEndian.Uint16(b[6:]) || m.Seq != binary.NativeEndian.Uint32(b[8:]) {
			t.Fatalf("header %+v does not match the bytes %x", m, b[:HeaderLen])
		}
		if int64(len(m.Payload)) != l-HeaderLen || (len(m.Payload) > 0 && &m.Payload[0] != &b[HeaderLen]) {
			t.Fatalf("payload of %d bytes for length %d, or not in place", len(m.Payload), l)
		}
		next := min(int((l+3)&^3), len(b))
		if len(rest) != len(b)-next || (len(rest) > 0 && &rest[0] != &b[next]) {
			t.Fatalf("rest of %d bytes after a message of length %d with %d bytes left", len(rest), l, len(b))
		}
		msgs = append(msgs, m)
		b = rest
	}
	return msgs, true
}

// FuzzNextMessage walks any bytes as a datagram of netlink messages, and
// each payload after its nfgenmsg header as attributes: every message lies
// within the datagram, with the length its header says (up to 4 GiB,
// whatever the datagram holds), and every step moves on; a datagram that
// walks to its end, written again message by message, walks to the same
// messages; and a walk allocates in proportion to the input at most.
func FuzzNextMessage(f *testing.F) {
	f.Add(append(msg(0x0102, FlagDumpInterrupted, 7, []byte{1, 2, 3}), msg(TypeDone, 0, 7, []byte{0, 0, 0, 0})...))
	for _, a := range seedAttributes(f) {
		f.Add(append(msg(1<<8|2, 0, 0, append([]byte{2, 0, 0, 0}, a...)), msg(TypeError, 0, 1, make([]byte, 20))...))
	}
	f.Add(msg(TypeDone, 2, 0, nil)[:HeaderLen-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzztest.Bounded(t, len(b), func() {
			msgs, _ := walkMessages(t, b)
			for _, m := range msgs {
				if len(m.Payload) >= NfgenLen {
					walkAttrs(t, m.Payload[NfgenLen:], 2)
				}
			}
		})
		msgs, ok := walkMessages(t, b)
		if !ok {
			return
		}
		var again []byte
		for _, m := range msgs {
			again = append(again, msg(m.Type, m.Flags, m.Seq, m.Payload)...)
		}
		msgs2, ok := walkMessages(t, again)
		if !ok || len(msgs2) != len(msgs) {
			t.Fatalf("the re-encoded datagram walks to %d messages (ok %v), want %d", len(msgs2), ok, len(msgs))
		}
		for i, m := range msgs {
			m2 := msgs2[i]
			if m2.Type != m.Type || m2.Flags != m.Flags || m2.Seq != m.Seq || !bytes.Equal(m2.Payload, m.Payload) {
				t.Fatalf("message %d: %+v after re-encoding, want %+v", i, m2, m)
			}
		}
	})
}
