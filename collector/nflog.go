package collector

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/nflog"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

var (
	errNflogKey     = errors.New("unknown nflog group-by key")
	errNflogStopped = errors.New("nflog listener stopped")
	errNflogLimit   = errors.New("invalid nflog series limit")
)

// maxInvalidReasons bounds the reasons of invalid packets; the others
// read other.
const maxInvalidReasons = 100

// NflogKeys are the keys --nflog.group-by takes, besides group and prefix
// which every series has.
var NflogKeys = []string{"family", "proto", "sport", "dport", "src", "dst", "src_net", "dst_net", "in", "out", "hook", "mark"}

// DefaultNflogMaxSeries is the default NflogConfig.MaxSeries.
const DefaultNflogMaxSeries = 4096

// NflogSource delivers logged packets and the listener's counts;
// *nflog.Listener is one.
type NflogSource interface {
	Run(ctx context.Context, fn func([]nflog.Packet)) error
	Stats() (nflog.Stats, error)
}

// NflogConfig configures the nflog collector.
type NflogConfig struct {
	// GroupBy are the keys series are summed by, after group and prefix,
	// in Graphite hierarchy order; see NflogKeys.
	GroupBy []string
	// MaxSeries bounds the series; past it, new key combinations of a
	// group are summed into its overflow series, whose prefix and keys
	// read other. DefaultNflogMaxSeries when 0.
	MaxSeries int
	// ConntrackInvalid counts conntrack's invalid-packet messages, which
	// arrive on group 0 (nflog.InvalidGroup), by reason instead of as
	// nflog series.
	ConntrackInvalid bool
	// Networks names the networks of the src_net and dst_net keys, as
	// for conntrack flows (the configuration file's networks); an address
	// in none of them, or every address when nil, reads other.
	Networks *flow.Networks
	// InterfaceName names the interface of an index in the watched
	// namespace, for the in and out keys; nil reads the index.
	InterfaceName func(index uint32) string
}

// ParseNflogGroupBy parses a comma-separated list of NflogKeys; "" is
// none.
func ParseNflogGroupBy(s string) ([]string, error) {
	var keys []string
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for k := range strings.SplitSeq(s, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(NflogKeys, k) {
			return nil, fmt.Errorf("%w %q: want %s (group and prefix are always kept)", errNflogKey, k, strings.Join(NflogKeys, ", "))
		}
		if slices.Contains(keys, k) {
			return nil, fmt.Errorf("%w %q: given twice", errNflogKey, k)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Validate checks the configuration.
func (cfg NflogConfig) Validate() error {
	for i, k := range cfg.GroupBy {
		if !slices.Contains(NflogKeys, k) || slices.Contains(cfg.GroupBy[:i], k) {
			return fmt.Errorf("%w %q", errNflogKey, k)
		}
	}
	if cfg.MaxSeries < 0 {
		return fmt.Errorf("%w %d: must be positive", errNflogLimit, cfg.MaxSeries)
	}
	return nil
}

// Fields of a series key that --nflog.group-by keeps.
const (
	nkFamily = 1 << iota
	nkProto
	nkSport
	nkDport
	nkSrc
	nkDst
	nkSrcNet
	nkDstNet
	nkIn
	nkOut
	nkHook
	nkMark
)

// nflogKey identifies a series: the group, the prefix (interned, trimmed)
// and the group-by fields, the others left zero.
type nflogKey struct {
	group               uint16
	prefix              string
	family, proto, hook uint8
	sport, dport        uint16
	src, dst            netip.Addr
	// srcNet and dstNet are network names, interned by cfg.Networks.
	srcNet, dstNet string
	in, out, mark  uint32
	overflow       bool
}

// nflogSeries is one series. packets and bytes are written by the
// listener under Nflog.mu; labels and path by snapshots under Nflog.rowsMu.
type nflogSeries struct {
	key            nflogKey
	packets, bytes uint64
	labels         *tree.Labels
	path           []string
}

// Nflog counts the packets nflog rules log, by group, prefix and the keys
// of --nflog.group-by, and the packets lost on the way.
type Nflog struct {
	src    NflogSource
	cfg    NflogConfig
	fields uint
	names  []string

	// mu guards what the listener writes: the series, the interned
	// prefixes and the overflow count.
	mu         sync.Mutex
	series     map[nflogKey]*nflogSeries
	order      []*nflogSeries
	prefixes   map[string]string
	overflowed uint64
	// The last series counted and the raw prefix of its last packet; the
	// last prefix looked up, raw and interned.
	last       *nflogSeries
	lastSeries []byte
	lastRaw    []byte
	lastPrefix string
	// The invalid packets, by key, in order of appearance; reasons are
	// interned, reasonBuf the listener's scratch.
	invalid      map[invalidKey]*uint64
	invalidOrder []invalidKey
	reasons      map[string]string
	reasonBuf    []byte

	// rowsMu guards what snapshots keep from one to the next.
	rowsMu      sync.Mutex
	rows        []tree.Row
	invalidRows []tree.Row
	ifnames     map[uint32]string

	up atomic.Bool

	columns                                          []tree.Column
	packets, bytes, lost                             *tree.Desc
	seriesDesc, limitDesc, overflowDesc, upDesc      *tree.Desc
	buffer, growths, overruns, decodeErrors, dropped *tree.Desc
	invalidDesc                                      *tree.Desc
	invalidColumns                                   []tree.Column
}

// invalidKey identifies a series of invalid packets.
type invalidKey struct {
	family, proto uint8
	reason        string
	in            bool
}

// NewNflog returns an nflog collector reading src.
func NewNflog(src NflogSource, cfg NflogConfig) (*Nflog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = DefaultNflogMaxSeries
	}
	c := &Nflog{src: src, cfg: cfg, series: map[nflogKey]*nflogSeries{}, prefixes: map[string]string{}, ifnames: map[uint32]string{},
		invalid: map[invalidKey]*uint64{}, reasons: map[string]string{}, reasonBuf: make([]byte, 0, 256),
		lastSeries: make([]byte, 0, 128)}
	c.names = append([]string{"group", "prefix"}, cfg.GroupBy...)
	for _, k := range cfg.GroupBy {
		c.fields |= 1 << slices.Index(NflogKeys, k)
	}
	const ns = namespace + "_nflog_"
	c.packets = tree.NewDesc(ns+"packets_total",
		"Packets logged to the nflog group by rules with the prefix, by the keys of --nflog.group-by.", tree.Counter, c.names...)
	c.bytes = tree.NewDesc(ns+"bytes_total",
		"Bytes (IP total length) of the packets logged to the nflog group by rules with the prefix.", tree.Counter, c.names...)
	c.lost = tree.NewDesc(ns+"packets_lost_total",
		"Packets logged to the nflog group that the kernel could not queue for the exporter, from gaps in the group's sequence numbers.", tree.Counter, "group")
	c.seriesDesc = tree.NewDesc(ns+"series",
		"Number of nflog series held, the overflow series included.", tree.Gauge)
	c.limitDesc = tree.NewDesc(ns+"series_limit",
		"Most nflog series held before new key combinations go to their group's overflow series.", tree.Gauge)
	c.overflowDesc = tree.NewDesc(ns+"overflow_packets_total",
		"Logged packets counted in an overflow series because the series limit was reached.", tree.Counter)
	c.upDesc = tree.NewDesc(ns+"listener_up",
		"Whether the nflog listener is receiving (1) or failed and is retrying (0).", tree.Gauge)
	c.buffer = tree.NewDesc(ns+"receive_buffer_bytes",
		"Receive buffer of the nflog socket as the kernel reports it (SO_RCVBUF): twice what --nflog.receive-buffer asks for, as the kernel doubles a request to leave room for its own bookkeeping.", tree.Gauge)
	c.growths = tree.NewDesc(ns+"receive_buffer_growths_total",
		"Times the nflog socket's receive buffer was doubled after packets were lost.", tree.Counter)
	c.overruns = tree.NewDesc(ns+"listener_overruns_total",
		"Times the kernel reported that the nflog socket overran (ENOBUFS).", tree.Counter)
	c.decodeErrors = tree.NewDesc(ns+"decode_errors_total",
		"Nflog messages that could not be decoded and were skipped.", tree.Counter)
	c.dropped = tree.NewDesc(ns+"socket_drops_total",
		"Batches of nflog messages the kernel could not queue on the socket (SK_MEMINFO_DROPS); the packets they held are in packets_lost_total.", tree.Counter)
	c.invalidDesc = tree.NewDesc(namespace+"_conntrack_invalid_packets_total",
		"Packets conntrack found invalid, by the reason it logged (--nflog.conntrack-invalid); direction in for packets with an input device, out for the others.", tree.Counter,
		"family", "proto", "reason", "direction")
	c.columns = []tree.Column{{Desc: c.packets.WithLeaf("pkts")}, {Desc: c.bytes.WithLeaf("bytes")}}
	c.invalidColumns = []tree.Column{{Desc: c.invalidDesc}}
	return c, nil
}

// Listen receives logged packets and counts them until ctx is done (it
// then returns nil) or the listener fails. listener_up reads 1 meanwhile.
// Run it with a retry (task.Retry).
func (c *Nflog) Listen(ctx context.Context) error {
	c.up.Store(true)
	defer c.up.Store(false)
	err := c.src.Run(ctx, c.count)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errNflogStopped
	}
	return fmt.Errorf("nflog listener: %w", err)
}

// count adds a batch of logged packets to their series. It allocates only
// for a prefix or a series seen for the first time.
func (c *Nflog) count(ps []nflog.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range ps {
		p := &ps[i]
		if c.cfg.ConntrackInvalid && p.Group == nflog.InvalidGroup {
			if r, ok := nflog.InvalidReason(c.reasonBuf[:0], p.Prefix); ok {
				c.reasonBuf = r
				c.countInvalid(p, r)
				continue
			}
		}
		// Packets come in runs from one rule. Without keys, a packet of
		// the last series' group and raw prefix is counted there, with no
		// key built: what the lookups below would find.
		if s := c.last; s != nil && c.fields == 0 && s.key.group == p.Group && string(p.Prefix) == string(c.lastSeries) {
			s.packets++
			s.bytes += uint64(p.Length)
			if s.key.overflow {
				c.overflowed++
			}
			continue
		}
		var k nflogKey
		k.group = p.Group
		// The last prefix and series are tried before the maps.
		prefix, ok := c.lastPrefix, c.lastRaw != nil && string(p.Prefix) == string(c.lastRaw)
		if !ok {
			prefix, ok = c.prefixes[string(p.Prefix)]
			if ok {
				c.lastRaw = append(c.lastRaw[:0], p.Prefix...)
				c.lastPrefix = prefix
			}
		}
		if !ok {
			if len(c.prefixes) < c.cfg.MaxSeries {
				prefix = strings.TrimSpace(string(p.Prefix))
				c.prefixes[string(p.Prefix)] = prefix
			} else {
				k.overflow = true
			}
		}
		k.prefix = prefix
		if !k.overflow {
			c.fill(&k, p)
		}
		s := c.last
		if s == nil || s.key != k {
			s = c.series[k]
		}
		if s == nil {
			if len(c.series) >= c.cfg.MaxSeries {
				k = nflogKey{group: p.Group, overflow: true}
				c.overflowed++
				s = c.series[k]
			} else if k.overflow {
				c.overflowed++
			}
			if s == nil {
				s = &nflogSeries{key: k}
				c.series[k] = s
				c.order = append(c.order, s)
			}
		} else if k.overflow {
			c.overflowed++
		}
		s.packets++
		s.bytes += uint64(p.Length)
		c.last = s
		if string(c.lastSeries) != string(p.Prefix) {
			c.lastSeries = append(c.lastSeries[:0], p.Prefix...)
		}
	}
}

// countInvalid counts an invalid packet whose reason is r. c.mu must be
// held.
func (c *Nflog) countInvalid(p *nflog.Packet, r []byte) {
	reason, ok := c.reasons[string(r)]
	if !ok {
		reason = "other"
		if len(c.reasons) < maxInvalidReasons {
			reason = string(r)
			c.reasons[reason] = reason
		}
	}
	k := invalidKey{family: p.Family, proto: p.Proto, reason: reason, in: p.InDev != 0}
	n := c.invalid[k]
	if n == nil {
		n = new(uint64)
		c.invalid[k] = n
		c.invalidOrder = append(c.invalidOrder, k)
	}
	*n++
}

// fill sets the group-by fields of k from p.
func (c *Nflog) fill(k *nflogKey, p *nflog.Packet) {
	f := c.fields
	if f == 0 {
		return
	}
	if f&nkFamily != 0 {
		k.family = p.Family
	}
	if f&nkProto != 0 {
		k.proto = p.Proto
	}
	if f&nkSport != 0 {
		k.sport = p.SPort
	}
	if f&nkDport != 0 {
		k.dport = p.DPort
	}
	if f&nkSrc != 0 {
		k.src = p.Src
	}
	if f&nkDst != 0 {
		k.dst = p.Dst
	}
	if f&nkSrcNet != 0 {
		k.srcNet = c.cfg.Networks.Lookup(p.Src)
	}
	if f&nkDstNet != 0 {
		k.dstNet = c.cfg.Networks.Lookup(p.Dst)
	}
	if f&nkIn != 0 {
		k.in = p.InDev
	}
	if f&nkOut != 0 {
		k.out = p.OutDev
	}
	if f&nkHook != 0 {
		k.hook = p.Hook
	}
	if f&nkMark != 0 {
		k.mark = p.Mark
	}
}

// Update adds the series and the listener's counts to b.
func (c *Nflog) Update(_ context.Context, b *tree.Builder) error {
	// The losses are read before the series: a loss is counted after the
	// packet that revealed it.
	st, statsErr := c.src.Stats()
	c.mu.Lock()
	n := len(c.order)
	order := c.order[:n:n]
	values := make([]float64, 0, 2*n)
	for _, s := range order {
		values = append(values, float64(s.packets), float64(s.bytes))
	}
	overflowed := c.overflowed
	ni := len(c.invalidOrder)
	invalidKeys := c.invalidOrder[:ni:ni]
	invalidValues := make([]float64, ni)
	for i, k := range invalidKeys {
		invalidValues[i] = float64(*c.invalid[k])
	}
	c.mu.Unlock()

	c.rowsMu.Lock()
	for i := len(c.rows); i < n; i++ {
		s := order[i]
		vals := c.labelValues(&s.key)
		s.labels = tree.NewLabels(vals...)
		s.path = vals
		c.rows = append(c.rows, tree.Row{Labels: s.labels, Path: s.path})
	}
	rows := c.rows[:n:n]
	for i := len(c.invalidRows); i < ni; i++ {
		k := invalidKeys[i]
		dir := "out"
		if k.in {
			dir = "in"
		}
		vals := []string{nflogFamily(k.family), flow.ProtoName(k.proto), k.reason, dir}
		c.invalidRows = append(c.invalidRows, tree.Row{Labels: tree.NewLabels(vals...), Path: vals})
	}
	invalidRows := c.invalidRows[:ni:ni]
	c.rowsMu.Unlock()
	b.AddTable(&tree.Table{Columns: c.columns, Names: c.names, Prefix: []string{"nflog"}, Rows: rows, Values: values})
	if c.cfg.ConntrackInvalid {
		b.AddTable(&tree.Table{Columns: c.invalidColumns, Names: c.invalidDesc.Labels, Prefix: []string{"conntrack", "invalid"}, Rows: invalidRows, Values: invalidValues})
	}

	self := func(leaf ...string) []string { return append([]string{"exporter", "nflog"}, leaf...) }
	up := 0.0
	if c.up.Load() {
		up = 1
	}
	b.Add(c.upDesc, up, self("listener_up"))
	b.Add(c.seriesDesc, float64(n), self("series"))
	b.Add(c.limitDesc, float64(c.cfg.MaxSeries), self("series_limit"))
	b.Add(c.overflowDesc, float64(overflowed), self("overflow_packets"))
	b.Add(c.decodeErrors, float64(st.DecodeErrors), self("decode_errors"))
	b.Add(c.overruns, float64(st.Overruns), self("listener_overruns"))
	b.Add(c.growths, float64(st.BufferGrowths), self("receive_buffer_growths"))
	for _, g := range st.Groups {
		group := strconv.Itoa(int(g.Group))
		b.Add(c.lost, float64(g.Lost), self("lost", group), group)
	}
	if statsErr != nil {
		return statsErr
	}
	b.Add(c.dropped, float64(st.Drops), self("socket_drops"))
	b.Add(c.buffer, float64(st.ReadBuffer), self("receive_buffer_bytes"))
	return nil
}

// labelValues returns the label values of a series, which are also its
// Graphite path after nflog. c.rowsMu must be held.
func (c *Nflog) labelValues(k *nflogKey) []string {
	vals := make([]string, 0, len(c.names))
	vals = append(vals, strconv.Itoa(int(k.group)))
	if k.overflow {
		for range c.names[1:] {
			vals = append(vals, "other")
		}
		return vals
	}
	vals = append(vals, k.prefix)
	for _, key := range c.cfg.GroupBy {
		var v string
		switch key {
		case "family":
			v = nflogFamily(k.family)
		case "proto":
			v = flow.ProtoName(k.proto)
		case "sport":
			v = strconv.Itoa(int(k.sport))
		case "dport":
			v = strconv.Itoa(int(k.dport))
		case "src":
			v = addrLabel(k.src)
		case "dst":
			v = addrLabel(k.dst)
		case "src_net":
			v = k.srcNet
		case "dst_net":
			v = k.dstNet
		case "in":
			v = c.ifname(k.in)
		case "out":
			v = c.ifname(k.out)
		case "hook":
			v = nflogHook(k.family, k.hook)
		case "mark":
			v = "0x" + strconv.FormatUint(uint64(k.mark), 16)
		}
		vals = append(vals, v)
	}
	return vals
}

// ifname names interface index i; "" for none. c.rowsMu must be held.
func (c *Nflog) ifname(i uint32) string {
	if i == 0 {
		return ""
	}
	if n, ok := c.ifnames[i]; ok {
		return n
	}
	n := ""
	if c.cfg.InterfaceName != nil {
		n = c.cfg.InterfaceName(i)
	}
	if n == "" {
		n = strconv.FormatUint(uint64(i), 10)
	}
	c.ifnames[i] = n
	return n
}

func addrLabel(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// nflogFamily names a netfilter family (NFPROTO_*).
func nflogFamily(f uint8) string {
	switch f {
	case 1:
		return "inet"
	case 2:
		return "ipv4"
	case 3:
		return "arp"
	case 5:
		return "netdev"
	case 7:
		return "bridge"
	case 10:
		return "ipv6"
	}
	return strconv.Itoa(int(f))
}

// nflogHook names a netfilter hook of family f.
func nflogHook(f, h uint8) string {
	if f == 5 { // netdev
		switch h {
		case 0:
			return "ingress"
		case 1:
			return "egress"
		}
	}
	if int(h) < len(hookNames) {
		return hookNames[h]
	}
	return strconv.Itoa(int(h))
}

var hookNames = []string{"prerouting", "input", "forward", "output", "postrouting"}
