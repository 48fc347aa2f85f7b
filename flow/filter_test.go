package flow

import (
	"errors"
	"net/netip"
	"testing"
)

func TestFilter(t *testing.T) {
	web := Rule{Src: prefixes("192.168.0.0/16", "fd00::/8"), Proto: []uint8{ProtoTCP, ProtoUDP}, DPort: []PortRange{{80, 80}, {443, 443}, {8000, 8100}}}
	tests := []struct {
		name         string
		accept, deny []Rule
		d            delta
		want         bool
	}{
		{name: "no rules", d: tcp4("1.2.3.4", "5.6.7.8", 1, 2), want: true},
		{name: "empty rule accepts all", accept: []Rule{{}}, d: tcp4("1.2.3.4", "5.6.7.8", 1, 2), want: true},
		{name: "empty deny rule denies all", deny: []Rule{{}}, d: tcp4("1.2.3.4", "5.6.7.8", 1, 2), want: false},
		{name: "accept all fields", accept: []Rule{web}, d: tcp4("192.168.1.2", "5.6.7.8", 1000, 443), want: true},
		{name: "accept range", accept: []Rule{web}, d: tcp4("192.168.1.2", "5.6.7.8", 1000, 8080), want: true},
		{name: "accept mapped v4", accept: []Rule{web}, d: tcp4("::ffff:192.168.1.2", "5.6.7.8", 1000, 80), want: true},
		{name: "accept v6", accept: []Rule{web}, d: delta{Family: familyIPv6, Proto: ProtoUDP, Src: addr("fd00::1"), Dst: addr("2001:db8::1"), DPort: 443}, want: true},
		{name: "wrong src", accept: []Rule{web}, d: tcp4("10.0.0.1", "5.6.7.8", 1000, 443), want: false},
		{name: "wrong port", accept: []Rule{web}, d: tcp4("192.168.1.2", "5.6.7.8", 1000, 22), want: false},
		{name: "wrong proto", accept: []Rule{web}, d: delta{Family: familyIPv4, Proto: ProtoSCTP, Src: addr("192.168.1.2"), Dst: addr("5.6.7.8"), DPort: 443}, want: false},
		{name: "ports never match icmp", accept: []Rule{{DPort: []PortRange{{0, 65535}}}}, d: delta{Family: familyIPv4, Proto: ProtoICMP, Src: addr("192.168.1.2"), Dst: addr("5.6.7.8")}, want: false},
		{name: "second accept rule", accept: []Rule{web, {Zone: []uint16{7}}}, d: delta{Proto: ProtoICMP, Zone: 7}, want: true},
		{name: "accept then deny dst", accept: []Rule{web}, deny: []Rule{{Dst: prefixes("5.6.7.0/24")}}, d: tcp4("192.168.1.2", "5.6.7.8", 1000, 443), want: false},
		{name: "accept deny other dst", accept: []Rule{web}, deny: []Rule{{Dst: prefixes("5.6.8.0/24")}}, d: tcp4("192.168.1.2", "5.6.7.8", 1000, 443), want: true},
		{name: "deny zone", deny: []Rule{{Zone: []uint16{7, 8}}}, d: delta{Zone: 8}, want: false},
		{name: "deny zone miss", deny: []Rule{{Zone: []uint16{7, 8}}}, d: delta{Zone: 9}, want: true},
		{name: "deny mark masked", deny: []Rule{{Mark: []MarkMatch{{Value: 0x10, Mask: 0xf0}}}}, d: delta{Mark: 0x1f}, want: false},
		{name: "deny mark masked miss", deny: []Rule{{Mark: []MarkMatch{{Value: 0x10, Mask: 0xf0}}}}, d: delta{Mark: 0x2f}, want: true},
		{name: "deny mark exact", deny: []Rule{{Mark: []MarkMatch{{Value: 5}}}}, d: delta{Mark: 5}, want: false},
		{name: "deny mark exact miss", deny: []Rule{{Mark: []MarkMatch{{Value: 5}}}}, d: delta{Mark: 0x105}, want: true},
		{name: "deny needs all fields", deny: []Rule{{Proto: []uint8{ProtoUDP}, SPort: []PortRange{{53, 53}}}}, d: tcp4("1.2.3.4", "5.6.7.8", 53, 1000), want: true},
		{name: "deny all fields", deny: []Rule{{Proto: []uint8{ProtoTCP}, SPort: []PortRange{{53, 53}}}}, d: tcp4("1.2.3.4", "5.6.7.8", 53, 1000), want: false},
		{name: "invalid address", accept: []Rule{{Src: prefixes("0.0.0.0/0")}}, d: delta{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFilter(tt.accept, tt.deny)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.match(&tt.d); got != tt.want {
				t.Errorf("match() = %v, want %v", got, tt.want)
			}
		})
	}
	var none *Filter
	if !none.match(&delta{}) {
		t.Error("nil Filter rejected a delta")
	}
}

func TestNewFilterErrors(t *testing.T) {
	tests := []struct {
		name         string
		accept, deny []Rule
		want         error
	}{
		{"bad range", []Rule{{DPort: []PortRange{{10, 9}}}}, nil, errRule},
		{"bad sport range deny", nil, []Rule{{SPort: []PortRange{{10, 9}}}}, errRule},
		{"invalid prefix", []Rule{{Src: []netip.Prefix{{}}}}, nil, errRule},
		{"mapped prefix", nil, []Rule{{Dst: prefixes("::ffff:0.0.0.0/96")}}, errRule},
		{"ok", []Rule{{Src: prefixes("10.1.2.3/8")}}, nil, nil},
	}
	for _, tt := range tests {
		if _, err := NewFilter(tt.accept, tt.deny); !errors.Is(err, tt.want) {
			t.Errorf("%s: NewFilter() error = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestFilterCopiesRules(t *testing.T) {
	rules := []Rule{{Src: prefixes("10.1.2.3/8")}}
	f, err := NewFilter(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules[0].Src[0] = netip.MustParsePrefix("192.0.2.0/24")
	if !f.match(&delta{Src: addr("10.9.9.9")}) {
		t.Error("Filter changed with the caller's rules")
	}
}
