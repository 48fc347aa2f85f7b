package flow

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/topk"
)

// TopConfig configures the top talkers: a ranked, bounded aggregation fed
// by the same deltas as the series, so that it agrees with them to the
// byte.
type TopConfig struct {
	// Count is how many talkers a reading holds; 0 turns them off.
	Count int
	// By are the keys talkers are told apart by: KeySrc, KeyDst or both.
	By []Key
	// Window is what the values cover: what moved in the last Window,
	// sliding in six steps.
	Window time.Duration
	// Capacity is how many keys each step of the window holds; the
	// values are exact while a window's distinct keys fit.
	Capacity int
	// IPv4Bits and IPv6Bits are the prefixes addresses are aggregated to.
	IPv4Bits, IPv6Bits int
}

// Defaults of the top talkers.
const (
	DefaultTopWindow   = time.Minute
	DefaultTopCapacity = 8192
	DefaultTopIPv4Bits = 32
	DefaultTopIPv6Bits = 64
)

// validate checks c when talkers are on.
func (c *TopConfig) validate() error {
	if c.Count <= 0 {
		return nil
	}
	if len(c.By) == 0 || len(c.By) > 2 {
		return fmt.Errorf("%w: top talkers are told apart by src, dst or both, not %v", errTop, c.By)
	}
	for _, k := range c.By {
		if k != KeySrc && k != KeyDst {
			return fmt.Errorf("%w: top talkers are told apart by src, dst or both, not %s", errTop, k)
		}
	}
	if c.IPv4Bits < 0 || c.IPv4Bits > 32 || c.IPv6Bits < 0 || c.IPv6Bits > 128 {
		return fmt.Errorf("%w: top talker prefixes /%d and /%d out of range", errTop, c.IPv4Bits, c.IPv6Bits)
	}
	if c.Capacity < c.Count {
		return fmt.Errorf("%w: top talker capacity %d below the count %d", errTop, c.Capacity, c.Count)
	}
	return nil
}

// topKey is a talker: its addresses, aggregated to their prefixes.
type topKey [2]netip.Addr

// talkers is the top talkers' state.
type talkers struct {
	cfg      TopConfig
	src, dst bool
	t        *topk.TopK[topKey]
}

func newTalkers(c TopConfig) (*talkers, error) {
	if c.Count <= 0 {
		return nil, nil
	}
	t, err := topk.New[topKey](topk.Config{Capacity: c.Capacity, Window: c.Window})
	if err != nil {
		return nil, fmt.Errorf("%w: top talkers: %v", errTop, err)
	}
	tk := &talkers{cfg: c, t: t}
	for _, k := range c.By {
		tk.src = tk.src || k == KeySrc
		tk.dst = tk.dst || k == KeyDst
	}
	return tk, nil
}

// prefix returns a aggregated to the configured prefix.
func (tk *talkers) prefix(a netip.Addr) netip.Addr {
	a = a.Unmap()
	bits := tk.cfg.IPv4Bits
	if a.Is6() {
		bits = tk.cfg.IPv6Bits
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a
	}
	return p.Addr()
}

// add counts d.
func (tk *talkers) add(d *delta) {
	var k topKey
	if tk.src {
		k[0] = tk.prefix(d.Src)
	}
	if tk.dst {
		k[1] = tk.prefix(d.Dst)
	}
	tk.t.Add(k, d.OrigBytes, d.OrigPackets, d.ReplyBytes, d.ReplyPackets)
}

// Talker is one top talker: its key values (in TopConfig.By order), what
// it moved in the window, and the most its bytes may be over the truth (0
// when exact): the truth is within [value, value + BytesError] for each
// direction's bytes and their sum.
type Talker struct {
	Values                                           []string
	OrigBytes, OrigPackets, ReplyBytes, ReplyPackets uint64
	BytesError                                       uint64
}

// TopReading is a reading of the top talkers.
type TopReading struct {
	// On tells whether top talkers are on; the rest is empty when not.
	On       bool
	Keys     []Key
	Talkers  []Talker
	Tracked  int
	Capacity int
	Window   time.Duration
	// Live tells whether live accounting feeds them (else DESTROY events
	// alone).
	Live bool
}

// read returns the top talkers.
func (tk *talkers) read(live bool) TopReading {
	if tk == nil {
		return TopReading{}
	}
	snap := tk.t.Snapshot(tk.cfg.Count)
	r := TopReading{On: true, Keys: tk.cfg.By, Tracked: snap.Tracked, Capacity: tk.cfg.Capacity, Window: tk.cfg.Window, Live: live}
	for _, row := range snap.Rows {
		t := Talker{OrigBytes: row.OrigBytes, OrigPackets: row.OrigPackets, ReplyBytes: row.ReplyBytes, ReplyPackets: row.ReplyPackets, BytesError: row.Error}
		for _, k := range tk.cfg.By {
			a := row.Key[0]
			if k == KeyDst {
				a = row.Key[1]
			}
			s := a.String()
			if bits := tk.bits(a); bits < a.BitLen() {
				s = netip.PrefixFrom(a, bits).String()
			}
			t.Values = append(t.Values, s)
		}
		r.Talkers = append(r.Talkers, t)
	}
	return r
}

func (tk *talkers) bits(a netip.Addr) int {
	if a.Is4() {
		return tk.cfg.IPv4Bits
	}
	return tk.cfg.IPv6Bits
}

// Top returns the top talkers of the last window, largest orig+reply bytes
// first; TopReading.On is false when they are off.
func (p *Pipeline) Top() TopReading {
	return p.agg.top.read(p.agg.cfg.Live)
}
