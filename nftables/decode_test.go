package nftables

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ti-mo/netfilter"
)

func nested(typ uint16, children ...netfilter.Attribute) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Nested: true, Children: children}
}

func str(typ uint16, s string) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Data: append([]byte(s), 0)}
}

func raw(typ uint16, b ...byte) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Data: b}
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

// attrs marshals attributes as they follow the nfgenmsg header.
func attrs(t testing.TB, a ...netfilter.Attribute) []byte {
	t.Helper()
	b, err := netfilter.MarshalAttributes(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func counterData(pkts, bytes uint64) netfilter.Attribute {
	return nested(objData, u64(counterBytes, bytes), u64(counterPackets, pkts))
}

var decodeObjectTests = []struct {
	name   string
	family Family
	attrs  []netfilter.Attribute
	want   Objects
	err    error
}{
	{
		name:   "counter",
		family: FamilyINet,
		attrs: []netfilter.Attribute{str(objTable, "filter"), str(objName, "web"), u32(objType, objectCounter),
			counterData(12, 3400), u32(5, 1), u64(6, 7)},
		want: Objects{Counters: []Counter{{Family: FamilyINet, Table: "filter", Name: "web", Packets: 12, Bytes: 3400}}},
	},
	{
		name:   "counter with data before type",
		family: FamilyNetdev,
		attrs:  []netfilter.Attribute{counterData(1, 2), u32(objType, objectCounter), str(objName, "in"), str(objTable, "nd")},
		want:   Objects{Counters: []Counter{{Family: FamilyNetdev, Table: "nd", Name: "in", Packets: 1, Bytes: 2}}},
	},
	{
		name:   "quota until, in use",
		family: FamilyIPv4,
		attrs: []netfilter.Attribute{str(objTable, "t"), str(objName, "q"), u32(objType, objectQuota),
			nested(objData, u64(quotaBytes, 1000), u64(quotaConsumed, 10), u32(quotaFlags, 0))},
		want: Objects{Quotas: []Quota{{Family: FamilyIPv4, Table: "t", Name: "q", Limit: 1000, Used: 10}}},
	},
	{
		name:   "quota over, depleted",
		family: FamilyIPv6,
		attrs: []netfilter.Attribute{str(objTable, "t"), str(objName, "q"), u32(objType, objectQuota),
			nested(objData, u64(quotaBytes, 1000), u64(quotaConsumed, 1000), u32(quotaFlags, quotaFlagInv|quotaFlagDepleted))},
		want: Objects{Quotas: []Quota{{Family: FamilyIPv6, Table: "t", Name: "q", Limit: 1000, Used: 1000, Over: true, Exhausted: true}}},
	},
	{
		name:   "quota used up, without the depleted flag",
		family: FamilyBridge,
		attrs: []netfilter.Attribute{str(objTable, "t"), str(objName, "q"), u32(objType, objectQuota),
			nested(objData, u64(quotaBytes, 5), u64(quotaConsumed, 5))},
		want: Objects{Quotas: []Quota{{Family: FamilyBridge, Table: "t", Name: "q", Limit: 5, Used: 5, Exhausted: true}}},
	},
	{
		name:   "other object type",
		family: FamilyINet,
		attrs:  []netfilter.Attribute{str(objTable, "t"), str(objName, "l"), u32(objType, 4), nested(objData, u64(1, 5))},
	},
	{
		name:   "no type",
		family: FamilyINet,
		attrs:  []netfilter.Attribute{str(objTable, "t"), str(objName, "c"), counterData(1, 2)},
		err:    errIncomplete,
	},
	{
		name:   "no name",
		family: FamilyINet,
		attrs:  []netfilter.Attribute{str(objTable, "t"), u32(objType, objectCounter), counterData(1, 2)},
		err:    errIncomplete,
	},
	{
		name:   "counter without packets",
		family: FamilyINet,
		attrs:  []netfilter.Attribute{str(objTable, "t"), str(objName, "c"), u32(objType, objectCounter), nested(objData, u64(counterBytes, 1))},
		err:    errIncomplete,
	},
	{
		name:   "short counter",
		family: FamilyINet,
		attrs: []netfilter.Attribute{str(objTable, "t"), str(objName, "c"), u32(objType, objectCounter),
			nested(objData, u64(counterBytes, 1), u32(counterPackets, 1))},
		err: errAttribute,
	},
	{
		name:   "quota without limit",
		family: FamilyINet,
		attrs:  []netfilter.Attribute{str(objTable, "t"), str(objName, "q"), u32(objType, objectQuota), nested(objData, u64(quotaConsumed, 1))},
		err:    errIncomplete,
	},
	{
		name:   "short type",
		family: FamilyINet,
		attrs:  []netfilter.Attribute{str(objTable, "t"), str(objName, "c"), raw(objType, 1), counterData(1, 2)},
		err:    errAttribute,
	},
}

func TestDecodeObject(t *testing.T) {
	for _, tt := range decodeObjectTests {
		t.Run(tt.name, func(t *testing.T) {
			var got Objects
			err := got.decode(tt.family, attrs(t, tt.attrs...), make(interner))
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); err == nil && diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeObjectTruncated cuts a counter message short anywhere before
// the end of its data: it must never decode into a counter.
func TestDecodeObjectTruncated(t *testing.T) {
	b := attrs(t, decodeObjectTests[0].attrs...)
	required := len(attrs(t, decodeObjectTests[0].attrs[:4]...)) // table, name, type, data
	for n := range required {
		var o Objects
		if err := o.decode(FamilyINet, b[:n], make(interner)); err == nil && len(o.Counters) > 0 {
			t.Errorf("%d of %d bytes decoded into %+v without an error", n, len(b), o)
		}
	}
}

func TestTableNamesAreShared(t *testing.T) {
	names := make(interner)
	var o Objects
	for _, name := range []string{"a", "b"} {
		b := attrs(t, str(objTable, "filter"), str(objName, name), u32(objType, objectCounter), counterData(1, 1))
		if err := o.decode(FamilyINet, b, names); err != nil {
			t.Fatal(err)
		}
	}
	if len(names) != 1 || o.Counters[0].Table != "filter" || o.Counters[1].Table != "filter" {
		t.Errorf("names = %v, counters = %+v; want one shared table name", names, o.Counters)
	}
}

// udata builds a rule's user data records.
func udata(records ...[]byte) []byte {
	var b []byte
	for _, r := range records {
		b = append(b, r...)
	}
	return b
}

func record(typ byte, v string) []byte {
	return append([]byte{typ, byte(len(v) + 1)}, append([]byte(v), 0)...)
}

func expr(name string, data ...netfilter.Attribute) netfilter.Attribute {
	return nested(listElem, str(exprName, name), nested(exprData, data...))
}

func TestDecodeRule(t *testing.T) {
	payload := expr("payload", u32(1, 1), u32(2, 2), u32(3, 2), u32(4, 2))
	cmpExpr := expr("cmp", u32(1, 1), u32(2, 0), nested(3, raw(1, 0x23, 0x28)))
	counter := expr("counter", u64(counterBytes, 5000), u64(counterPackets, 7))
	objref := expr("objref", u32(1, 1), str(2, "web"))
	tests := []struct {
		name  string
		attrs []netfilter.Attribute
		want  RuleCounter
		ok    bool
		err   error
	}{
		{
			name: "counter with comment",
			attrs: []netfilter.Attribute{str(ruleTable, "filter"), str(ruleChain, "input"), u64(ruleHandle, 4),
				nested(ruleExpressions, payload, cmpExpr, counter), raw(ruleUserdata, udata(record(udataComment, "web in"))...)},
			want: RuleCounter{Family: FamilyINet, Table: "filter", Chain: "input", Handle: 4, Comment: "web in", Packets: 7, Bytes: 5000},
			ok:   true,
		},
		{
			name: "comment after another record",
			attrs: []netfilter.Attribute{str(ruleTable, "filter"), str(ruleChain, "input"), u64(ruleHandle, 4),
				nested(ruleExpressions, counter), raw(ruleUserdata, udata(record(1, "x"), record(udataComment, "c"))...)},
			want: RuleCounter{Family: FamilyINet, Table: "filter", Chain: "input", Handle: 4, Comment: "c", Packets: 7, Bytes: 5000},
			ok:   true,
		},
		{
			name: "counter without comment",
			attrs: []netfilter.Attribute{str(ruleTable, "filter"), str(ruleChain, "input"), u64(ruleHandle, 9),
				nested(ruleExpressions, counter)},
			want: RuleCounter{Family: FamilyINet, Table: "filter", Chain: "input", Handle: 9, Packets: 7, Bytes: 5000},
			ok:   true,
		},
		{
			name: "named counter only",
			attrs: []netfilter.Attribute{str(ruleTable, "filter"), str(ruleChain, "input"), u64(ruleHandle, 4),
				nested(ruleExpressions, payload, objref), raw(ruleUserdata, udata(record(udataComment, "named"))...)},
		},
		{
			name:  "no expressions",
			attrs: []netfilter.Attribute{str(ruleTable, "filter"), str(ruleChain, "input"), u64(ruleHandle, 4)},
		},
		{
			name:  "no handle",
			attrs: []netfilter.Attribute{str(ruleTable, "filter"), str(ruleChain, "input"), nested(ruleExpressions, counter)},
			err:   errIncomplete,
		},
		{
			name: "counter without bytes",
			attrs: []netfilter.Attribute{str(ruleTable, "filter"), str(ruleChain, "input"), u64(ruleHandle, 4),
				nested(ruleExpressions, expr("counter", u64(counterPackets, 7)))},
			err: errIncomplete,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := decodeRule(FamilyINet, attrs(t, tt.attrs...), make(interner))
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); ok && diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

func TestComment(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"none", nil, ""},
		{"comment", record(udataComment, "hello"), "hello"},
		{"without NUL", []byte{udataComment, 2, 'h', 'i'}, "hi"},
		{"truncated", []byte{udataComment, 9, 'h', 'i'}, ""},
		{"other record only", record(1, "x"), ""},
	} {
		if got := string(comment(tt.b)); got != tt.want {
			t.Errorf("%s: comment = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestFamilyString(t *testing.T) {
	for f, want := range map[Family]string{FamilyINet: "inet", FamilyIPv4: "ip", FamilyIPv6: "ip6", FamilyARP: "arp",
		FamilyBridge: "bridge", FamilyNetdev: "netdev", 12: "12"} {
		if got := f.String(); got != want {
			t.Errorf("Family(%d) = %q, want %q", f, got, want)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	eperm := []byte{0xff, 0xff, 0xff, 0xff} // -1 in either byte order
	if err := errorMessage(eperm); err == nil || err.Error() != "nf_tables dump: operation not permitted" {
		t.Errorf("errorMessage(-EPERM) = %v", err)
	}
	if err := errorMessage([]byte{0, 0, 0, 0}); !errors.Is(err, errUnexpected) {
		t.Errorf("errorMessage(0) = %v, want errUnexpected", err)
	}
	if err := errorMessage([]byte{1}); !errors.Is(err, errTruncated) {
		t.Errorf("errorMessage(short) = %v, want errTruncated", err)
	}
	if err := doneError([]byte{0, 0, 0, 0}); err != nil {
		t.Errorf("doneError(0) = %v", err)
	}
}

// BenchmarkDecodeObject measures the decoding of one counter message, the
// name string included.
func BenchmarkDecodeObject(b *testing.B) {
	msg := attrs(b, decodeObjectTests[0].attrs...)
	names := make(interner)
	o := Objects{Counters: make([]Counter, 0, 1)}
	b.ReportAllocs()
	for range b.N {
		o.Counters = o.Counters[:0]
		if err := o.decode(FamilyINet, msg, names); err != nil {
			b.Fatal(err)
		}
	}
}
