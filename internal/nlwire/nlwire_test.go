package nlwire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// attr builds one attribute of type typ holding val, padded to 4 bytes.
func attr(typ uint16, val []byte) []byte {
	b := make([]byte, AttrHeaderLen, AttrHeaderLen+len(val)+3)
	binary.NativeEndian.PutUint16(b, uint16(AttrHeaderLen+len(val)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestNextAttr(t *testing.T) {
	two := append(attr(0x8001, []byte("abc")), attr(7, []byte{1, 2, 3, 4})...) // nested flag set on the first
	tests := []struct {
		name    string
		b       []byte
		ok      bool
		typ     uint16
		val     []byte
		restLen int
		problem string
	}{
		{"two attributes, flags dropped", two, true, 1, []byte("abc"), 8, ""},
		{"last attribute without padding", attr(2, []byte{9})[:5], true, 2, []byte{9}, 0, ""},
		{"short header", []byte{8, 0, 1}, false, 0, nil, 0, "length 8 with 3 bytes left"},
		{"length past the end", attr(3, []byte{1, 2, 3, 4})[:6], false, 0, nil, 0, "length 8 with 6 bytes left"},
		{"length below the header", []byte{2, 0, 1, 0}, false, 0, nil, 0, "length 2 with 4 bytes left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, val, rest, ok := NextAttr(tt.b)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if got := AttrProblem(tt.b); got != tt.problem {
					t.Errorf("AttrProblem = %q, want %q", got, tt.problem)
				}
				return
			}
			if typ != tt.typ || !bytes.Equal(val, tt.val) || len(rest) != tt.restLen {
				t.Errorf("got type %d, value %v, %d bytes left; want %d, %v, %d", typ, val, len(rest), tt.typ, tt.val, tt.restLen)
			}
		})
	}
}

func TestNextMessage(t *testing.T) {
	msg := func(typ, flags uint16, seq uint32, payload []byte) []byte {
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
	datagram := append(msg(0x0102, FlagDumpInterrupted, 7, []byte{1, 2, 3}), msg(TypeDone, 0, 7, []byte{0, 0, 0, 0})...)
	var got []Message
	for b := datagram; len(b) > 0; {
		m, rest, ok := NextMessage(b)
		if !ok {
			t.Fatalf("message %d: %s", len(got), Problem(b))
		}
		got = append(got, m)
		b = rest
	}
	if len(got) != 2 || got[0].Type != 0x0102 || got[0].Flags != FlagDumpInterrupted || got[0].Seq != 7 ||
		!bytes.Equal(got[0].Payload, []byte{1, 2, 3}) || got[1].Type != TypeDone || len(got[1].Payload) != 4 {
		t.Errorf("messages = %+v", got)
	}
	for _, tt := range []struct {
		b       []byte
		problem string
	}{
		{datagram[:10], "10 bytes left"},
		{datagram[:18], "length 19 with 18 bytes left"},
	} {
		if _, _, ok := NextMessage(tt.b); ok {
			t.Errorf("%d bytes: ok", len(tt.b))
		} else if p := Problem(tt.b); p != tt.problem {
			t.Errorf("Problem = %q, want %q", p, tt.problem)
		}
	}
}

func TestCString(t *testing.T) {
	for in, want := range map[string]string{"web\x00": "web", "web": "web", "\x00x": "", "a\x00b\x00": "a"} {
		if got := string(CString([]byte(in))); got != want {
			t.Errorf("CString(%q) = %q, want %q", in, got, want)
		}
	}
}
