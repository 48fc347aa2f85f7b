package flow

import (
	"fmt"
	"slices"
	"strings"
)

// Key is a property of a flow that series can be grouped by. Its value is
// the label name and the Graphite level it makes.
type Key string

// The keys series can be grouped by.
const (
	// KeyFamily reads ipv4 or ipv6.
	KeyFamily Key = "family"
	// KeyProto reads the protocol name, or its number when it has none.
	KeyProto Key = "proto"
	// KeySPort reads the original source port, "none" for protocols without
	// ports, or its entry of the port list.
	KeySPort Key = "sport"
	// KeyDPort reads the original destination port like KeySPort.
	KeyDPort Key = "dport"
	// KeySrc reads the original source address.
	KeySrc Key = "src"
	// KeyDst reads the original destination address.
	KeyDst Key = "dst"
	// KeySrcNet reads the name of the network holding the original source
	// address, or "other".
	KeySrcNet Key = "src_net"
	// KeyDstNet reads the name of the network holding the original
	// destination address, or "other".
	KeyDstNet Key = "dst_net"
	// KeyZone reads the conntrack zone in decimal.
	KeyZone Key = "zone"
	// KeyMark reads the conntrack mark in hexadecimal, like 0x1f.
	KeyMark Key = "mark"
	// KeyNAT reads none, snat, dnat or both, from the tuples.
	KeyNAT Key = "nat"
)

// DefaultGroupBy is the grouping of --conntrack.group-by when not given.
const DefaultGroupBy = "family,proto,dport"

// keys lists every Key in the order error messages give them.
var keys = []Key{KeyFamily, KeyProto, KeySPort, KeyDPort, KeySrc, KeyDst, KeySrcNet, KeyDstNet, KeyZone, KeyMark, KeyNAT}

// Keys returns every Key series can be grouped by.
func Keys() []Key {
	return slices.Clone(keys)
}

// validKeys returns the valid keys for error messages.
func validKeys() string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// field returns the index of k in keys, or -1.
func (k Key) field() int {
	for i, v := range keys {
		if v == k {
			return i
		}
	}
	return -1
}

// ParseKey returns the Key named s.
func ParseKey(s string) (Key, error) {
	k := Key(s)
	if k.field() < 0 {
		return "", fmt.Errorf("%w %q: valid keys are %s", errUnknownKey, s, validKeys())
	}
	return k, nil
}

// ParseGroupBy parses a comma-separated list of keys, like
// "family,proto,dport". The list must not be empty nor name a key twice.
func ParseGroupBy(s string) ([]Key, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: name at least one of %s", errEmptyGroupBy, validKeys())
	}
	parts := strings.Split(s, ",")
	out := make([]Key, 0, len(parts))
	for _, p := range parts {
		k, err := ParseKey(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if err := checkGroupBy(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkGroupBy reports whether ks is a valid grouping.
func checkGroupBy(ks []Key) error {
	if len(ks) == 0 {
		return fmt.Errorf("%w: name at least one of %s", errEmptyGroupBy, validKeys())
	}
	for i, k := range ks {
		if k.field() < 0 {
			return fmt.Errorf("%w %q: valid keys are %s", errUnknownKey, string(k), validKeys())
		}
		for _, prev := range ks[:i] {
			if prev == k {
				return fmt.Errorf("%w %q", errDuplicateKey, string(k))
			}
		}
	}
	return nil
}
