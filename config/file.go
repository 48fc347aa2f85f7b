package config

import (
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/netfilter-exporter/netfilter_exporter/flow"
)

// File is a validated configuration file.
type File struct {
	// NetworkPrefixes maps each network name to its prefixes, as given;
	// nil when the file names no networks.
	NetworkPrefixes map[string][]netip.Prefix
	// Networks is built from NetworkPrefixes; nil when the file names no
	// networks.
	Networks *flow.Networks
	// PortRanges lists the ports of the ports field, as given; nil when the
	// field is absent.
	PortRanges []flow.PortRange
	// Ports is built from PortRanges; nil when the field is absent, so
	// ports read as their number.
	Ports *flow.Ports
	// Accept and Deny hold the filter rules, as given.
	Accept, Deny []flow.Rule
	// Filter is built from Accept and Deny; nil when there are no rules.
	Filter *flow.Filter
	// Conntrack holds the defaults of the --conntrack flags.
	Conntrack FileConntrack
}

// FileConntrack holds the defaults the file gives to the --conntrack flags;
// flags given on the command line win.
type FileConntrack struct {
	// GroupBy is the default of --conntrack.group-by; nil when not given.
	GroupBy []flow.Key
	// MaxSeries is the default of --conntrack.max-series; 0 when not given.
	MaxSeries int
}

// rawFile is the shape of the file, as read from its YAML (yaml.go).
type rawFile struct {
	Networks  map[string]strList
	Ports     strList
	Filters   *rawFilters
	Conntrack *rawConntrack
}

type rawFilters struct {
	Accept, Deny []rawRule
}

type rawRule struct {
	Src, Dst, Proto, SPort, DPort, Zone, Mark strList
}

type rawConntrack struct {
	GroupBy   strList
	MaxSeries scalar
}

// strList is a YAML list of scalars, each kept as its text. A value of
// another shape is described in bad, for Parse to report with its path.
type strList struct {
	items []string
	given bool
	bad   string
}

// scalar is a single YAML scalar kept as its text, or described in bad.
type scalar struct {
	text  string
	given bool
	bad   string
}

// Load reads and validates the configuration file at path, which must be
// a regular file of at most MaxConfigFileSize bytes (readFile).
func Load(path string) (*File, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// readFile returns the content of the file at path, which must be a
// regular file of at most MaxConfigFileSize bytes: what the exporter reads
// from every file it is given. Anything else is refused with what it is,
// without being read: a directory, a device such as /dev/zero, a socket,
// or a named pipe, which would block the start until something writes to
// it. The path is checked before it is opened (opening some devices does
// something), opened without blocking (a named pipe swapped in meanwhile
// would block the open) and checked again on the open file.
func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	tooLarge := fmt.Errorf("%s: %w: larger than %d bytes", path, errTooLarge, MaxConfigFileSize)
	if fi.Size() > MaxConfigFileSize {
		return nil, tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxConfigFileSize {
		return nil, tooLarge // it grew
	}
	return data, nil
}

// notRegular returns the error about path, of mode m, not being a regular
// file.
func notRegular(path string, m fs.FileMode) error {
	what := "of type " + m.Type().String()
	switch {
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a block device"
	}
	return fmt.Errorf("%s: %w: it is %s", path, errNotRegular, what)
}

// Parse validates the configuration data, read from the file name; errors
// begin with name.
func Parse(data []byte, name string) (*File, error) {
	raw, err := decodeFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := parser{file: name}
	c, err := p.config(raw)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parser turns a rawFile into a File, naming its file in errors.
type parser struct {
	file string
}

// errorf returns an error about the field at path.
func (p *parser) errorf(path, format string, args ...any) error {
	return fmt.Errorf("%s: %s: "+format, append([]any{p.file, path}, args...)...)
}

func (p *parser) config(raw *rawFile) (*File, error) {
	c := &File{}
	var err error
	if raw.Networks != nil {
		if c.NetworkPrefixes, err = p.networks(raw.Networks); err != nil {
			return nil, err
		}
		if c.Networks, err = flow.NewNetworks(c.NetworkPrefixes); err != nil {
			return nil, p.errorf("networks", "%w", err)
		}
	}
	if raw.Ports.given {
		if c.PortRanges, err = p.ports("ports", raw.Ports, true); err != nil {
			return nil, err
		}
		if c.Ports, err = flow.NewPorts(c.PortRanges); err != nil {
			return nil, p.errorf("ports", "%w", err)
		}
	}
	if f := raw.Filters; f != nil {
		if c.Accept, err = p.rules("filters.accept", f.Accept); err != nil {
			return nil, err
		}
		if c.Deny, err = p.rules("filters.deny", f.Deny); err != nil {
			return nil, err
		}
		if len(c.Accept)+len(c.Deny) > 0 {
			if c.Filter, err = flow.NewFilter(c.Accept, c.Deny); err != nil {
				return nil, p.errorf("filters", "%w", err)
			}
		}
	}
	if ct := raw.Conntrack; ct != nil {
		if c.Conntrack, err = p.conntrack(ct); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// list checks the shape of l and returns its items.
func (p *parser) list(path string, l strList, what string) ([]string, error) {
	if l.bad != "" {
		return nil, p.errorf(path, "%w: want a list of %s, not %s", errShape, what, l.bad)
	}
	if len(l.items) == 0 {
		return nil, p.errorf(path, "%w: list at least one of %s", errEmpty, what)
	}
	return l.items, nil
}

func (p *parser) networks(raw map[string]strList) (map[string][]netip.Prefix, error) {
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make(map[string][]netip.Prefix, len(raw))
	owner := make(map[netip.Prefix]string)
	for _, name := range names {
		path := "networks." + pathName(name)
		if name == "" || name == "other" {
			return nil, p.errorf("networks", "%s %w: names must not be empty nor \"other\", which addresses outside every network read", quote(name), errNetwork)
		}
		items, err := p.list(path, raw[name], "CIDRs")
		if err != nil {
			return nil, err
		}
		for i, s := range items {
			ip := fmt.Sprintf("%s[%d]", path, i)
			pfx, err := p.prefix(ip, s)
			if err != nil {
				return nil, err
			}
			if prev, ok := owner[pfx]; ok {
				return nil, p.errorf(ip, "%v %w: it is also in %s", pfx, errDuplicate, prev)
			}
			owner[pfx] = ip
			out[name] = append(out[name], pfx)
		}
	}
	return out, nil
}

// prefix parses a CIDR, or a single address as a host prefix.
func (p *parser) prefix(path, s string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, p.errorf(path, "%s %w", quote(s), errCIDR)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, p.errorf(path, "%s %w: IPv4-mapped IPv6 prefixes never match, as addresses are unmapped; give the IPv4 prefix", quote(s), errCIDR)
	}
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, p.errorf(path, "%s %w: the network is %v", quote(s), errHostBits, m)
	}
	return pfx, nil
}

// ports parses a list of ports and port ranges; with noOverlap, entries
// must not overlap.
func (p *parser) ports(path string, l strList, noOverlap bool) ([]flow.PortRange, error) {
	items, err := p.list(path, l, "ports or port ranges")
	if err != nil {
		return nil, err
	}
	out := make([]flow.PortRange, 0, len(items))
	// owner holds, for each port, 1 + the index of the entry that has it:
	// each port is taken once, so the check is linear in the entries.
	var owner []int32
	if noOverlap {
		owner = make([]int32, 1<<16)
	}
	for i, s := range items {
		ip := fmt.Sprintf("%s[%d]", path, i)
		r, err := p.portRange(ip, s)
		if err != nil {
			return nil, err
		}
		if noOverlap {
			for port := int(r.Lo); port <= int(r.Hi); port++ {
				if j := owner[port] - 1; j >= 0 {
					return nil, p.errorf(ip, "%v %w %s[%d] (%v)", r, errOverlap, path, j, out[j])
				}
			}
			for port := int(r.Lo); port <= int(r.Hi); port++ {
				owner[port] = int32(i + 1)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// portRange parses a port, like 443, or a range, like 8000-8100.
func (p *parser) portRange(path, s string) (flow.PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	l, err1 := parsePort(lo)
	h, err2 := l, error(nil)
	if isRange {
		h, err2 = parsePort(hi)
	}
	if err1 != nil || err2 != nil {
		return flow.PortRange{}, p.errorf(path, "%s %w: want a number from 0 to 65535 or a range like \"8000-8100\"", quote(s), errPort)
	}
	if l > h {
		return flow.PortRange{}, p.errorf(path, "port range %s %w", quote(s), errPortRange)
	}
	return flow.PortRange{Lo: l, Hi: h}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	return uint16(n), err
}

func (p *parser) rules(path string, raw []rawRule) ([]flow.Rule, error) {
	var out []flow.Rule
	for i := range raw {
		r, err := p.rule(fmt.Sprintf("%s[%d]", path, i), &raw[i])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (p *parser) rule(path string, raw *rawRule) (flow.Rule, error) {
	var r flow.Rule
	set := false
	field := func(name string, l strList, what string, parse func(path, s string) error) error {
		if !l.given {
			return nil
		}
		set = true
		fp := path + "." + name
		items, err := p.list(fp, l, what)
		if err != nil {
			return err
		}
		for i, s := range items {
			if err := parse(fmt.Sprintf("%s[%d]", fp, i), s); err != nil {
				return err
			}
		}
		return nil
	}
	prefixes := func(dst *[]netip.Prefix) func(string, string) error {
		return func(path, s string) error {
			pfx, err := p.prefix(path, s)
			*dst = append(*dst, pfx)
			return err
		}
	}
	ports := func(dst *[]flow.PortRange) func(string, string) error {
		return func(path, s string) error {
			pr, err := p.portRange(path, s)
			*dst = append(*dst, pr)
			return err
		}
	}
	for _, err := range []error{
		field("src", raw.Src, "CIDRs", prefixes(&r.Src)),
		field("dst", raw.Dst, "CIDRs", prefixes(&r.Dst)),
		field("proto", raw.Proto, "protocols", func(path, s string) error {
			pr, err := flow.ParseProto(strings.TrimSpace(s))
			if err != nil {
				return p.errorf(path, "%s %w: want tcp, udp, udplite, sctp, dccp, icmp, icmpv6, gre or a number from 0 to 255", quote(s), errProto)
			}
			r.Proto = append(r.Proto, pr)
			return nil
		}),
		field("sport", raw.SPort, "ports or port ranges", ports(&r.SPort)),
		field("dport", raw.DPort, "ports or port ranges", ports(&r.DPort)),
		field("zone", raw.Zone, "zones", func(path, s string) error {
			z, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
			if err != nil {
				return p.errorf(path, "%s %w: want a number from 0 to 65535", quote(s), errZone)
			}
			r.Zone = append(r.Zone, uint16(z))
			return nil
		}),
		field("mark", raw.Mark, "marks", func(path, s string) error {
			m, err := p.mark(path, s)
			r.Mark = append(r.Mark, m)
			return err
		}),
	} {
		if err != nil {
			return flow.Rule{}, err
		}
	}
	if !set {
		return flow.Rule{}, p.errorf(path, "rule %w: set at least one of src, dst, proto, sport, dport, zone, mark", errEmpty)
	}
	return r, nil
}

// mark parses a mark, like 5 or 0x10/0xf0: a value and an optional mask,
// in decimal, hexadecimal (0x), octal (0) or binary (0b).
func (p *parser) mark(path, s string) (flow.MarkMatch, error) {
	bad := func(why string) (flow.MarkMatch, error) {
		return flow.MarkMatch{}, p.errorf(path, "%s %w: %s", quote(s), errMark, why)
	}
	v, m, hasMask := strings.Cut(strings.TrimSpace(s), "/")
	value, err := strconv.ParseUint(strings.TrimSpace(v), 0, 32)
	if err != nil {
		return bad("want a 32-bit value, like 5 or 0x10, optionally with a mask, like 0x10/0xf0")
	}
	mask := uint64(0xffffffff)
	if hasMask {
		if mask, err = strconv.ParseUint(strings.TrimSpace(m), 0, 32); err != nil {
			return bad("the mask is not a 32-bit number")
		}
		if mask == 0 {
			return bad("a zero mask matches every mark")
		}
	}
	return flow.MarkMatch{Value: uint32(value), Mask: uint32(mask)}, nil
}

func (p *parser) conntrack(raw *rawConntrack) (FileConntrack, error) {
	var c FileConntrack
	if raw.GroupBy.given {
		items, err := p.list("conntrack.group_by", raw.GroupBy, "keys")
		if err != nil {
			return c, err
		}
		for i, s := range items {
			path := fmt.Sprintf("conntrack.group_by[%d]", i)
			k, err := flow.ParseKey(strings.TrimSpace(s))
			if err != nil {
				return c, p.errorf(path, "%s %w: valid keys are %s", quote(s), errGroupBy, keyList())
			}
			if j := slices.Index(c.GroupBy, k); j >= 0 {
				return c, p.errorf(path, "%s %w: it is also conntrack.group_by[%d]", quote(s), errDuplicate, j)
			}
			c.GroupBy = append(c.GroupBy, k)
		}
	}
	if ms := raw.MaxSeries; ms.given {
		if ms.bad != "" {
			return c, p.errorf("conntrack.max_series", "%s %w", ms.bad, errMaxSeries)
		}
		n, err := strconv.Atoi(strings.TrimSpace(ms.text))
		if err != nil || n <= 0 {
			return c, p.errorf("conntrack.max_series", "%s %w", quote(ms.text), errMaxSeries)
		}
		c.MaxSeries = n
	}
	return c, nil
}

// keyList returns the valid group-by keys for error messages.
func keyList() string {
	var b strings.Builder
	for i, k := range flow.Keys() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(k))
	}
	return b.String()
}
