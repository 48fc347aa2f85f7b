package nfacct

import (
	"errors"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/netfilter-exporter/netfilter_exporter/internal/fuzztest"
)

// errorsOfUnmarshal are the errors unmarshalObject may return, wrapped.
var errorsOfUnmarshal = []error{errBadMessage, errBadAttribute, errUnexpected, errNoName}

// encodeObject writes o as a NEW message with every attribute, the flags
// and the quota included, so that it decodes to o again.
func encodeObject(t testing.TB, o Object) netlink.Message {
	t.Helper()
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysAcct, MessageType: msgNew},
		[]netfilter.Attribute{name(o.Name), u64(attrPkts, o.Packets), u64(attrBytes, o.Bytes), u32(attrUse, o.Use),
			u32(attrFlags, uint32(o.Flags)), u64(attrQuota, o.Quota)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// FuzzUnmarshalObject decodes any message type and payload as an
// nfnetlink_acct object, as a dump answers and the over-quota group sends
// it: an error is one of the package's (errors.Is); an object decoded is
// of the accounting subsystem, has a name without a trailing NUL, and
// written again with every attribute decodes to the same object; and
// decoding allocates in proportion to the input at most.
func FuzzUnmarshalObject(f *testing.F) {
	acct := uint16(netfilter.NFSubsysAcct) << 8
	for _, o := range []Object{
		{Name: "ipv4.http", Packets: 7, Bytes: 896, Use: 2},
		{Name: "q", Packets: 3, Bytes: 300, Use: 1, Flags: FlagQuotaPackets | FlagOverQuota, Quota: 3},
		{Name: strings.Repeat("n", MaxNameLen), Packets: 1 << 63, Bytes: 1<<64 - 1},
	} {
		f.Add(acct|uint16(msgNew), encodeObject(f, o).Data)
	}
	f.Add(acct, []byte{0, 0, 0, 0, 0x20, 0x00, attrName, 0x00, 'x'}) // an attribute past the end
	f.Add(uint16(netfilter.NFSubsysCTNetlink)<<8, encodeObject(f, Object{Name: "ct"}).Data)
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data}
		var o Object
		var err error
		fuzztest.Bounded(t, len(data), func() { o, err = unmarshalObject(m) })
		if err != nil {
			for _, want := range errorsOfUnmarshal {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("unmarshalObject: %v, not one of the package's errors", err)
		}
		if typ>>8 != uint16(netfilter.NFSubsysAcct) {
			t.Fatalf("decoded %+v from a message of type %#x", o, typ)
		}
		if o.Name == "" || strings.HasSuffix(o.Name, "\x00") {
			t.Fatalf("decoded name %q", o.Name)
		}
		again, err := unmarshalObject(encodeObject(t, o))
		if err != nil {
			t.Fatalf("%+v written again does not decode: %v", o, err)
		}
		if again != o {
			t.Fatalf("%+v written again decodes to %+v", o, again)
		}
	})
}
