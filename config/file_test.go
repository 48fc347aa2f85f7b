package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netfilter-exporter/netfilter_exporter/flow"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		NetworkPrefixes: map[string][]netip.Prefix{
			"lan":     pfx("192.168.0.0/16", "fd00::/8"),
			"dmz":     pfx("198.51.100.0/24"),
			"servers": pfx("192.168.10.0/24", "2001:db8:10::/48", "192.0.2.53/32"),
		},
		PortRanges: []flow.PortRange{{Lo: 22, Hi: 22}, {Lo: 53, Hi: 53}, {Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}, {Lo: 8000, Hi: 8100}},
		Accept: []flow.Rule{
			{Src: pfx("192.168.0.0/16"), Proto: []uint8{flow.ProtoTCP, flow.ProtoUDP}, DPort: []flow.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}, {Lo: 8000, Hi: 8100}}},
			{Src: pfx("fd00::/8"), Proto: []uint8{flow.ProtoICMPv6, flow.ProtoSCTP}, SPort: []flow.PortRange{{Lo: 1024, Hi: 65535}}},
		},
		Deny: []flow.Rule{
			{Dst: pfx("192.0.2.0/24")},
			{Zone: []uint16{7}},
			{Mark: []flow.MarkMatch{{Value: 0x10, Mask: 0xf0}, {Value: 5, Mask: 0xffffffff}}},
		},
		Conntrack: FileConntrack{GroupBy: []flow.Key{flow.KeyFamily, flow.KeyProto, flow.KeyDPort}, MaxSeries: 4096},
	}
	opts := cmp.Options{
		cmpopts.IgnoreFields(File{}, "Networks", "Ports", "Filter"),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
	if diff := cmp.Diff(want, c, opts); diff != "" {
		t.Errorf("Load() (-want +got):\n%s", diff)
	}

	// The built flow types follow the file.
	if c.Networks == nil || c.Ports == nil || c.Filter == nil {
		t.Fatalf("Networks, Ports, Filter = %v, %v, %v", c.Networks, c.Ports, c.Filter)
	}
	for addr, want := range map[string]string{"192.168.1.1": "lan", "192.168.10.1": "servers", "fd00::1": "lan", "192.0.2.53": "servers", "10.0.0.1": "other"} {
		if got := c.Networks.Lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Networks.Lookup(%s) = %q, want %q", addr, got, want)
		}
	}
	for port, want := range map[uint16]string{22: "22", 8080: "8000-8100", 8101: "other"} {
		if got := c.Ports.Lookup(flow.ProtoTCP, port); got != want {
			t.Errorf("Ports.Lookup(%d) = %q, want %q", port, got, want)
		}
	}
	// The Filter holds the rules compared above (flow's tests check what
	// they match).
	if accept, deny := c.Filter.Rules(); accept != len(want.Accept) || deny != len(want.Deny) {
		t.Errorf("Filter.Rules() = %d, %d; want %d, %d", accept, deny, len(want.Accept), len(want.Deny))
	}
}

// TestParseAnchorsAndMerges: YAML's anchors, aliases and merge keys work
// as YAML says; a field given beside a merge wins over the merged one.
func TestParseAnchorsAndMerges(t *testing.T) {
	data := `
networks:
  lan: &lan [192.168.0.0/16]
filters:
  accept:
    - &web {dst: *lan, dport: [80, 443]}
    - <<: *web
      dport: [8080]
    - <<: [{proto: [udp]}, *web]
`
	c, err := Parse([]byte(data), "anchors.yml")
	if err != nil {
		t.Fatal(err)
	}
	lan := []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}
	want := []flow.Rule{
		{Dst: lan, DPort: []flow.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}}},
		{Dst: lan, DPort: []flow.PortRange{{Lo: 8080, Hi: 8080}}},
		{Dst: lan, DPort: []flow.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}}, Proto: []uint8{flow.ProtoUDP}},
	}
	if diff := cmp.Diff(want, c.Accept, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("Accept (-want +got):\n%s", diff)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, data := range []string{"", "# nothing\n", "networks:\nports:\nfilters:\nconntrack:\n", "filters: {accept: [], deny: []}\n"} {
		c, err := Parse([]byte(data), "empty.yml")
		if err != nil {
			t.Errorf("Parse(%q) error: %v", data, err)
			continue
		}
		if diff := cmp.Diff(&File{}, c, cmpopts.IgnoreUnexported(File{})); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", data, diff)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want error
		msg  string
	}{
		{"syntax", "networks: [", errYAML, "config.yml: invalid YAML: line 1"},
		{"tab", "networks:\n\tlan: []", errYAML, "config.yml: invalid YAML"},
		{"unknown top field", "network: {}", errStructure, `config.yml: line 1: unexpected structure: unknown field "network" in the top level; valid fields are networks, ports, filters, conntrack`},
		{"unknown rule field", "filters:\n  deny:\n    - {colour: [red]}", errStructure, `config.yml: line 3: unexpected structure: unknown field "colour" in filters.deny[0]; valid fields are src, dst, proto, sport, dport, zone, mark`},
		{"unknown filters field", "filters:\n  allow: []", errStructure, `line 2: unexpected structure: unknown field "allow" in filters`},
		{"unknown conntrack field", "conntrack:\n  max-series: 5", errStructure, `unknown field "max-series" in conntrack; valid fields are group_by, max_series`},
		{"field twice", "conntrack:\n  max_series: 5\n  max_series: 6", errStructure, `line 3: unexpected structure: field "max_series" is given twice in conntrack`},
		{"duplicate network name", "networks:\n  lan: [10.0.0.0/8]\n  lan: [10.1.0.0/16]", errStructure, `config.yml: line 3: unexpected structure: networks.lan is given twice`},
		{"networks not a map", "networks: [10.0.0.0/8]", errStructure, "config.yml: line 1: unexpected structure: networks must be a map of names to lists of CIDRs, not a list"},
		{"filters not a map", "filters: 5", errStructure, `filters must be a map, not "5"`},
		{"rules not a list", "filters: {deny: {zone: [1]}}", errStructure, "config.yml: line 1: unexpected structure: filters.deny must be a list of rules, not a map"},
		{"rule not a map", "filters:\n  accept:\n    - [src]", errStructure, `config.yml: line 3: unexpected structure: filters.accept[0] must be a map, not a list`},
		{"top level a list", "- networks", errStructure, `config.yml: line 1: unexpected structure: the top level must be a map, not a list`},
		{"top level text", "networks", errStructure, `config.yml: line 1: unexpected structure: the top level must be a map, not "networks"`},
		{"key a list", "networks:\n  [lan]: [10.0.0.0/8]", errStructure, `config.yml: line 2: unexpected structure: a key must be a name, not a list`},
		{"two documents", "ports: [22]\n---\nports: [80]", errDocuments, `config.yml: more than one YAML document`},
		{"empty second document", "ports: [22]\n---\n", errDocuments, `config.yml: more than one YAML document`},
		{"merge of a list", "conntrack:\n  <<: [1]\n", errStructure, `config.yml: line 2: unexpected structure: a merge (<<) takes a map or a list of maps, not "1"`},
		{"unknown field merged", "base: &b {colour: [red]}\n", errStructure, `config.yml: line 1: unexpected structure: unknown field "base" in the top level`},
		{"unknown field from a merge", "filters:\n  accept:\n    - <<: {colour: [red]}\n", errStructure, `config.yml: line 3: unexpected structure: unknown field "colour" in filters.accept[0]`},
		{"null in a list", "networks: {lan: [10.0.0.0/8, ~]}", errCIDR, `networks.lan[1]: "" is not a CIDR`},
		{"bad CIDR", "networks:\n  lan: [192.168.0.0/16, 10.0.0.0/33]", errCIDR, `config.yml: networks.lan[1]: "10.0.0.0/33" is not a CIDR`},
		{"bad CIDR text", "networks: {lan: [lan]}", errCIDR, `networks.lan[0]: "lan" is not a CIDR`},
		{"zoned address", "networks: {lan: [\"fe80::1%eth0\"]}", errCIDR, `networks.lan[0]: "fe80::1%eth0" is not a CIDR`},
		{"mapped CIDR", "networks: {lan: [\"::ffff:10.0.0.0/104\"]}", errCIDR, `networks.lan[0]: "::ffff:10.0.0.0/104" is not a CIDR: IPv4-mapped`},
		{"host bits", "networks: {lan: [192.168.1.1/16]}", errHostBits, `networks.lan[0]: "192.168.1.1/16" has host bits set: the network is 192.168.0.0/16`},
		{"network list empty", "networks: {lan: []}", errEmpty, `networks.lan: is empty`},
		{"network null", "networks: {lan: }", errEmpty, `networks.lan: is empty`},
		{"network not a list", "networks: {lan: 10.0.0.0/8}", errShape, `networks.lan: has the wrong shape: want a list of CIDRs, not "10.0.0.0/8"`},
		{"network nested list", "networks: {lan: [[10.0.0.0/8]]}", errShape, `networks.lan: has the wrong shape: want a list of CIDRs, not a list holding lists or maps`},
		{"network named other", "networks: {other: [10.0.0.0/8]}", errNetwork, `config.yml: networks: "other" is not a valid network`},
		{"network named empty", `networks: {"": [10.0.0.0/8]}`, errNetwork, `config.yml: networks: "" is not a valid network`},
		{"prefix in two networks", "networks:\n  lan: [10.0.0.0/8]\n  dmz: [10.0.0.0/8]", errDuplicate, `networks.lan[0]: 10.0.0.0/8 is given twice: it is also in networks.dmz[0]`},
		{"prefix twice in one network", "networks: {lan: [10.0.0.0/8, 10.0.0.0/8]}", errDuplicate, `networks.lan[1]: 10.0.0.0/8 is given twice: it is also in networks.lan[0]`},
		{"bad port", "ports: [22, http]", errPort, `config.yml: ports[1]: "http" is not a port or port range`},
		{"port too big", "ports: [65536]", errPort, `ports[0]: "65536" is not a port`},
		{"negative port", "ports: [-1]", errPort, `ports[0]: "-1" is not a port`},
		{"half range", "ports: [\"80-\"]", errPort, `ports[0]: "80-" is not a port`},
		{"range lo above hi", "ports: [\"8100-8000\"]", errPortRange, `config.yml: ports[0]: port range "8100-8000" starts above its end`},
		{"ports overlap", "ports: [\"8000-8100\", 8080]", errOverlap, `config.yml: ports[1]: 8080 overlaps ports[0] (8000-8100)`},
		{"ports empty", "ports: []", errEmpty, `config.yml: ports: is empty`},
		{"ports not a list", "ports: 22", errShape, `ports: has the wrong shape: want a list of ports or port ranges, not "22"`},
		{"bad proto", "filters: {accept: [{proto: [tcp, esp]}]}", errProto, `config.yml: filters.accept[0].proto[1]: "esp" is not a protocol`},
		{"proto too big", "filters: {accept: [{proto: [256]}]}", errProto, `filters.accept[0].proto[0]: "256" is not a protocol`},
		{"bad rule CIDR", "filters: {deny: [{zone: [1]}, {dst: [192.0.2.0/24, 300.0.0.0/8]}]}", errCIDR, `config.yml: filters.deny[1].dst[1]: "300.0.0.0/8" is not a CIDR`},
		{"bad rule port", "filters: {accept: [{dport: [80, 70000]}]}", errPort, `filters.accept[0].dport[1]: "70000" is not a port`},
		{"bad rule range", "filters: {accept: [{sport: [\"2-1\"]}]}", errPortRange, `filters.accept[0].sport[0]: port range "2-1" starts above its end`},
		{"bad zone", "filters: {deny: [{zone: [65536]}]}", errZone, `config.yml: filters.deny[0].zone[0]: "65536" is not a zone`},
		{"bad mark", "filters: {deny: [{mark: [0x1g]}]}", errMark, `config.yml: filters.deny[0].mark[0]: "0x1g" is not a mark`},
		{"mark too big", "filters: {deny: [{mark: [0x100000000]}]}", errMark, `"0x100000000" is not a mark`},
		{"bad mark mask", "filters: {deny: [{mark: [\"0x10/x\"]}]}", errMark, `"0x10/x" is not a mark: the mask is not a 32-bit number`},
		{"zero mark mask", "filters: {deny: [{mark: [\"0x10/0\"]}]}", errMark, `"0x10/0" is not a mark: a zero mask matches every mark`},
		{"empty rule", "filters: {deny: [{}]}", errEmpty, `config.yml: filters.deny[0]: rule is empty`},
		{"empty rule field", "filters: {accept: [{src: []}]}", errEmpty, `config.yml: filters.accept[0].src: is empty`},
		{"rule field not a list", "filters: {accept: [{zone: 7}]}", errShape, `filters.accept[0].zone: has the wrong shape: want a list of zones, not "7"`},
		{"bad group_by", "conntrack: {group_by: [family, port]}", errGroupBy, `config.yml: conntrack.group_by[1]: "port" is not a group-by key: valid keys are family, proto`},
		{"duplicate group_by", "conntrack: {group_by: [family, proto, family]}", errDuplicate, `conntrack.group_by[2]: "family" is given twice: it is also conntrack.group_by[0]`},
		{"empty group_by", "conntrack: {group_by: []}", errEmpty, `conntrack.group_by: is empty`},
		{"zero max_series", "conntrack: {max_series: 0}", errMaxSeries, `config.yml: conntrack.max_series: "0" is not a positive integer`},
		{"text max_series", "conntrack: {max_series: many}", errMaxSeries, `conntrack.max_series: "many" is not a positive integer`},
		{"list max_series", "conntrack: {max_series: [1]}", errMaxSeries, `conntrack.max_series: a list is not a positive integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "config.yml")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse() = %+v, error %v, want %v", c, err, tt.want)
			}
			if c != nil {
				t.Errorf("Parse() returned a Config with an error")
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "config.yml: ") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yml")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yml") {
		t.Errorf("Load(missing) error = %v, want one naming the file and wrapping os.ErrNotExist", err)
	}
	path := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(path, []byte("ports: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, errPort) || !strings.HasPrefix(err.Error(), path+": ports[0]: ") {
		t.Errorf("Load(bad) error = %v", err)
	}
}
