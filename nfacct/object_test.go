package nfacct

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

func u64(typ uint16, v uint64) netfilter.Attribute {
	a := netfilter.Attribute{Type: typ}
	a.PutUint64(v)
	return a
}

func u32(typ uint16, v uint32) netfilter.Attribute {
	a := netfilter.Attribute{Type: typ}
	a.PutUint32(v)
	return a
}

func name(s string) netfilter.Attribute {
	return netfilter.Attribute{Type: attrName, Data: append([]byte(s), 0)}
}

func TestUnmarshalObject(t *testing.T) {
	acct := netfilter.Header{SubsystemID: netfilter.NFSubsysAcct, MessageType: msgNew}
	tests := []struct {
		name    string
		header  netfilter.Header
		attrs   []netfilter.Attribute
		want    Object
		wantErr error
	}{
		{
			name:   "plain object",
			header: acct,
			attrs:  []netfilter.Attribute{name("http"), u64(attrPkts, 12), u64(attrBytes, 3400), u32(attrUse, 2)},
			want:   Object{Name: "http", Packets: 12, Bytes: 3400, Use: 2},
		},
		{
			name:   "byte quota over its limit",
			header: acct,
			attrs: []netfilter.Attribute{name("q"), u64(attrPkts, 1), u64(attrBytes, 1500), u32(attrUse, 1),
				u32(attrFlags, uint32(FlagQuotaBytes|FlagOverQuota)), u64(attrQuota, 1000)},
			want: Object{Name: "q", Packets: 1, Bytes: 1500, Use: 1, Flags: FlagQuotaBytes | FlagOverQuota, Quota: 1000},
		},
		{
			name:   "counters beyond 2^53 kept exactly",
			header: acct,
			attrs:  []netfilter.Attribute{name("big"), u64(attrPkts, 1<<60+1), u64(attrBytes, 1<<63+7)},
			want:   Object{Name: "big", Packets: 1<<60 + 1, Bytes: 1<<63 + 7},
		},
		{
			name:    "unknown attributes are ignored",
			header:  acct,
			attrs:   []netfilter.Attribute{name("x"), u64(99, 5)},
			want:    Object{Name: "x"},
			wantErr: nil,
		},
		{
			name:    "no name",
			header:  acct,
			attrs:   []netfilter.Attribute{u64(attrPkts, 1)},
			wantErr: errNoName,
		},
		{
			name:    "wrong subsystem",
			header:  netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink},
			attrs:   []netfilter.Attribute{name("x")},
			wantErr: errUnexpected,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := netfilter.MarshalNetlink(tt.header, tt.attrs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := unmarshalObject(msg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("object mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnmarshalObjectTruncated(t *testing.T) {
	msg, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysAcct}, []netfilter.Attribute{name("abc")})
	if err != nil {
		t.Fatal(err)
	}
	// Cut the message inside the name attribute.
	msg.Data = msg.Data[:len(msg.Data)-3]
	if _, err := unmarshalObject(msg); err == nil {
		t.Fatal("decoding a truncated message succeeded")
	}
	// A message shorter than its nfgenmsg header, and one whose attribute
	// header is cut, fail with the package's error (they failed with
	// ti-mo/netfilter's alone, which FuzzUnmarshalObject found).
	for _, data := range [][]byte{{1}, {0, 0, 0, 0, 8, 0, 1}} {
		if _, err := unmarshalObject(netlink.Message{Data: data}); !errors.Is(err, errBadMessage) {
			t.Errorf("decoding %x: error = %v, want errBadMessage", data, err)
		}
	}
}

func TestMarshalObject(t *testing.T) {
	tests := []struct {
		name    string
		obj     Object
		wantErr error
	}{
		{name: "plain", obj: Object{Name: "web"}},
		{name: "packet quota", obj: Object{Name: "q", Flags: FlagQuotaPackets, Quota: 10}},
		{name: "empty name", obj: Object{}, wantErr: errNoName},
		{name: "name too long", obj: Object{Name: "abcdefghijklmnopqrstuvwxyz0123456"}, wantErr: errNameTooLong},
		{name: "two quota units", obj: Object{Name: "q", Flags: FlagQuotaPackets | FlagQuotaBytes}, wantErr: errBadQuota},
		{name: "over-quota flag set by hand", obj: Object{Name: "q", Flags: FlagQuotaBytes | FlagOverQuota}, wantErr: errBadQuota},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs, err := marshalObject(tt.obj)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			// What we encode must decode to the same object.
			msg, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysAcct}, attrs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := unmarshalObject(msg)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.obj, got); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
