package flow

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestNetworksLookup(t *testing.T) {
	n, err := NewNetworks(map[string][]netip.Prefix{
		"lan":     prefixes("192.168.0.0/16", "fd00::/8"),
		"servers": prefixes("192.168.10.0/24", "fd00:1::/32"),
		"host":    prefixes("192.168.10.7/32", "fd00:1::7/128"),
		"ten":     prefixes("10.1.2.3/8"), // host bits are masked
		"default": prefixes("0.0.0.0/0"),
		"sub64":   prefixes("fd00:2::/64"),
		"sub72":   prefixes("fd00:2:0:0:ff00::/72"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr, want string
	}{
		{"192.168.1.1", "lan"},
		{"192.168.10.1", "servers"},
		{"192.168.10.7", "host"},
		{"10.200.0.1", "ten"},
		{"8.8.8.8", "default"},
		{"::ffff:192.168.10.7", "host"},
		{"::ffff:192.168.1.1", "lan"},
		{"fd12::1", "lan"},
		{"fd00:1::1", "servers"},
		{"fd00:1::7", "host"},
		{"2001:db8::1", "other"},
		{"fd00:2::1", "sub64"},
		{"fd00:2::ff01:0:0:1", "sub72"},
		{"fd00:2::feff:0:0:1", "sub64"},
		{"fd00:2:0:1::1", "lan"},
		{"fe80::1%eth0", "other"},
		{"fd00:1::7%eth0", "host"},
	}
	for _, tt := range tests {
		if got := n.Lookup(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Lookup(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if got := n.Lookup(netip.Addr{}); got != "other" {
		t.Errorf("Lookup(invalid) = %q, want other", got)
	}
	var none *Networks
	if got := none.Lookup(netip.MustParseAddr("192.168.1.1")); got != "other" {
		t.Errorf("nil Lookup = %q, want other", got)
	}
	if got, want := n.sortedNames(), []string{"default", "host", "lan", "servers", "sub64", "sub72", "ten"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestNewNetworksErrors(t *testing.T) {
	tests := []struct {
		name string
		in   map[string][]netip.Prefix
		want error
	}{
		{"empty name", map[string][]netip.Prefix{"": prefixes("10.0.0.0/8")}, errNetworkName},
		{"reserved name", map[string][]netip.Prefix{"other": prefixes("10.0.0.0/8")}, errNetworkName},
		{"invalid prefix", map[string][]netip.Prefix{"a": {netip.Prefix{}}}, errPrefix},
		{"mapped prefix", map[string][]netip.Prefix{"a": prefixes("::ffff:10.0.0.0/104")}, errPrefix},
		{"duplicate", map[string][]netip.Prefix{"a": prefixes("10.0.0.0/8"), "b": prefixes("10.1.0.0/8")}, errDuplicatePrefix},
		{"duplicate v6", map[string][]netip.Prefix{"a": prefixes("fd00::/8"), "b": prefixes("fd00::/8")}, errDuplicatePrefix},
		{"same name twice ok", map[string][]netip.Prefix{"a": prefixes("10.0.0.0/8", "10.0.0.0/8")}, nil},
		{"none ok", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewNetworks(tt.in); !errors.Is(err, tt.want) {
				t.Errorf("NewNetworks() error = %v, want %v", err, tt.want)
			}
		})
	}
}
