package flow

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
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
	// Flows is how many flows of the last dump round a reading holds, the
	// ones that moved the most bytes since the previous dump; 0 means
	// DefaultTopFlows.
	Flows int
}

// Defaults of the top talkers.
const (
	DefaultTopWindow   = time.Minute
	DefaultTopCapacity = 8192
	DefaultTopIPv4Bits = 32
	DefaultTopIPv6Bits = 64
	// DefaultTopFlows is as many flows as /top shows.
	DefaultTopFlows = 100
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
	if c.Flows < 0 {
		return fmt.Errorf("%w: %d top flows", errTop, c.Flows)
	}
	if c.Capacity < c.Count {
		return fmt.Errorf("%w: top talker capacity %d below the count %d", errTop, c.Capacity, c.Count)
	}
	return nil
}

// topKey is a talker: its source and destination addresses, aggregated to
// their prefixes, in their 16-byte form (IPv4 mapped); zero when not a
// key. It holds no pointers and is 32 bytes, not the 48 of two
// netip.Addr: the TopK holds six buckets of Capacity of them, and their
// maps.
type topKey [2][16]byte

// hashTopKey hashes a talker for the TopK's index: each of its four words
// is mixed in by a multiplication and a shift, so that the upper bits,
// which the index uses, depend on every byte. It is a few nanoseconds,
// where hash/maphash's Comparable, which the TopK uses otherwise, reads
// the key through its type.
func hashTopKey(k topKey) uint64 {
	const m = 0x9e3779b97f4a7c15
	h := binary.LittleEndian.Uint64(k[0][:8]) * m
	h = (h ^ h>>29 ^ binary.LittleEndian.Uint64(k[0][8:])) * m
	h = (h ^ h>>29 ^ binary.LittleEndian.Uint64(k[1][:8])) * m
	h = (h ^ h>>29 ^ binary.LittleEndian.Uint64(k[1][8:])) * m
	return h ^ h>>29
}

// talkers is the top talkers' state, and the flows of the last dump round
// that moved the most bytes.
type talkers struct {
	cfg      TopConfig
	src, dst bool
	t        *topk.TopK[topKey]
	hot      hotFlows
	// mask4 masks an IPv4 address to IPv4Bits.
	mask4 uint32
	// pend sums a dump round's deltas by talker before they reach t.
	pend pending
	// batch sums DESTROY events' deltas by IPv4 talker while batching
	// is set, across batches until endBatch's conditions hand them over,
	// so that each distinct talker costs one Add of t for many events.
	batch    batchSums
	batching bool
	// clock is t's; stepEnd is when t's current step ends, before which
	// advance has nothing to do.
	clock   func() time.Time
	stepEnd time.Time
}

// batchSlots is the size of batchSums' table, a power of two; batchMax
// bounds the talkers it sums before they go on to the TopK, a quarter of
// it, so that its probes stay short.
const (
	batchSlots = 1024
	batchMax   = batchSlots / 4
)

// batchSums sums deltas by IPv4 talker (its 64-bit key, as pending's) in
// an open-addressing table that a new batch empties by moving gen on,
// without clearing it: a look-up is one multiplication and, mostly, one
// probe. The aggregator's mutex guards it.
type batchSums struct {
	gen  uint32
	keys [batchSlots]uint64
	// gens stamps the slots in use in the batch of gen; idx are their
	// entries in ents.
	gens [batchSlots]uint32
	idx  [batchSlots]int32
	ents []pendingEntry
}

// pendingMax bounds the talkers a round sums before it hands them to the
// TopK: beyond, the sums so far go on and the round starts over.
const pendingMax = 4096

// pending sums deltas by talker: a dump lists every flow of the table, most
// of them from talkers it listed already, and one look-up in a small map
// (by a 64-bit key for IPv4) is cheaper than one in the TopK, under its
// lock. The aggregator's mutex guards it.
type pending struct {
	idx4 map[uint64]int32 // IPv4 talkers by src<<32|dst, masked
	idx6 map[topKey]int32 // the others
	ents []pendingEntry
}

// pendingEntry is one talker's sums, as the TopK takes them.
type pendingEntry = topk.Item[topKey]

// newTalkers returns the top talkers of c, nil when they are off; clock
// moves their window.
func newTalkers(c TopConfig, clock func() time.Time) (*talkers, error) {
	if c.Count <= 0 {
		return nil, nil
	}
	t, err := topk.New(topk.Config[topKey]{Capacity: c.Capacity, Window: c.Window, Clock: clock, Hash: hashTopKey})
	if err != nil {
		return nil, fmt.Errorf("%w: top talkers: %v", errTop, err)
	}
	if c.Flows == 0 {
		c.Flows = DefaultTopFlows
	}
	tk := &talkers{cfg: c, t: t, hot: hotFlows{n: c.Flows, clock: clock}, clock: clock, stepEnd: t.StepEnd(),
		pend: pending{idx4: make(map[uint64]int32), idx6: make(map[topKey]int32)}}
	tk.batch.gen = 1
	if c.IPv4Bits > 0 {
		tk.mask4 = ^uint32(0) << (32 - c.IPv4Bits)
	}
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
	if bits == a.BitLen() {
		return a
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a
	}
	return p.Addr()
}

// add counts d: in the batch's sums while batching, for an IPv4 talker.
func (tk *talkers) add(d *delta) {
	if d.OrigBytes|d.OrigPackets|d.ReplyBytes|d.ReplyPackets == 0 {
		return
	}
	if tk.batching {
		src, dst := d.Src.Unmap(), d.Dst.Unmap()
		if src.Is4() && dst.Is4() {
			tk.batchAdd(src, dst, d)
			return
		}
	}
	tk.addAddrs(d.Src, d.Dst, d.OrigBytes, d.OrigPackets, d.ReplyBytes, d.ReplyPackets)
}

// beginBatch starts a batch of events whose IPv4 talkers are summed until
// endBatch.
func (tk *talkers) beginBatch() {
	tk.batching = true
}

// endBatch ends a batch of events. Its sums stay, for the next batches to
// add to, until they hold batchMax talkers, the window is about to move
// (advance) or a reading wants them (Pipeline.Top): the listener delivers
// a burst in many small batches, and a talker's sums then reach the TopK
// once for many batches, not once for each.
func (tk *talkers) endBatch() {
	tk.batching = false
}

// batchAdd sums d, of the IPv4 talker of src and dst (unmapped), in the
// batch's sums.
func (tk *talkers) batchAdd(src, dst netip.Addr, d *delta) {
	b := &tk.batch
	k := tk.key4(src, dst)
	h := uint32((k * 0x9e3779b97f4a7c15) >> (64 - 10))
	var i int32
	for {
		if b.gens[h] != b.gen {
			i = int32(len(b.ents))
			b.ents = append(b.ents, pendingEntry{Key: tk.key4To16(k)})
			b.gens[h], b.keys[h], b.idx[h] = b.gen, k, i
			break
		}
		if b.keys[h] == k {
			i = b.idx[h]
			break
		}
		h = (h + 1) & (batchSlots - 1)
	}
	c := &b.ents[i].Counts
	c.OrigPackets += d.OrigPackets
	c.OrigBytes += d.OrigBytes
	c.ReplyPackets += d.ReplyPackets
	c.ReplyBytes += d.ReplyBytes
	if len(b.ents) >= batchMax {
		tk.flushBatch()
	}
}

// flushBatch hands the batch's sums to the TopK and empties them.
func (tk *talkers) flushBatch() {
	b := &tk.batch
	if len(b.ents) == 0 {
		return
	}
	b.ents = tk.addAll(b.ents)
	b.gen++
	if b.gen == 0 {
		// The stamps wrapped: a slot stamped long ago would look in use.
		clear(b.gens[:])
		b.gen = 1
	}
}

// key4 returns the 64-bit key of the IPv4 talker of src and dst
// (unmapped): src<<32|dst, each masked to IPv4Bits, 0 when not a key.
func (tk *talkers) key4(src, dst netip.Addr) uint64 {
	var k uint64
	if tk.src {
		s := src.As4()
		k = uint64((uint32(s[0])<<24|uint32(s[1])<<16|uint32(s[2])<<8|uint32(s[3]))&tk.mask4) << 32
	}
	if tk.dst {
		d := dst.As4()
		k |= uint64((uint32(d[0])<<24 | uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3])) & tk.mask4)
	}
	return k
}

// addAddrs counts a delta of the talker of src and dst in the TopK.
func (tk *talkers) addAddrs(src, dst netip.Addr, origBytes, origPkts, replyBytes, replyPkts uint64) {
	tk.t.Add(tk.key(src, dst), origBytes, origPkts, replyBytes, replyPkts)
}

// dumped counts what the dumped flow e moved since the previous dump, c in
// record order, for a flow whose delta goes to its series without passing
// aggregator.count: to the talkers (summed until the round ends), and to
// the round's largest flows.
func (tk *talkers) dumped(e *ctnl.Flow, c *[4]uint64) {
	if c[0]|c[1]|c[2]|c[3] == 0 {
		return
	}
	tk.hot.offer(e, c[1], c[3])
	p := &tk.pend
	src, dst := e.Orig.Src.Unmap(), e.Orig.Dst.Unmap()
	var i int32
	if src.Is4() && dst.Is4() {
		k := tk.key4(src, dst)
		var ok bool
		if i, ok = p.idx4[k]; !ok {
			i = int32(len(p.ents))
			p.ents = append(p.ents, pendingEntry{Key: tk.key4To16(k)})
			p.idx4[k] = i
		}
	} else {
		k := tk.key(src, dst)
		var ok bool
		if i, ok = p.idx6[k]; !ok {
			i = int32(len(p.ents))
			p.ents = append(p.ents, pendingEntry{Key: k})
			p.idx6[k] = i
		}
	}
	pc := &p.ents[i].Counts
	pc.OrigPackets += c[0]
	pc.OrigBytes += c[1]
	pc.ReplyPackets += c[2]
	pc.ReplyBytes += c[3]
	if len(p.ents) >= pendingMax {
		tk.flush()
	}
}

// key returns the talker of src and dst.
func (tk *talkers) key(src, dst netip.Addr) topKey {
	var k topKey
	if tk.src {
		k[0] = tk.prefix(src).As16()
	}
	if tk.dst {
		k[1] = tk.prefix(dst).As16()
	}
	return k
}

// key4To16 returns the talker of the 64-bit IPv4 key k (key4's): what key
// returns for its addresses, without aggregating them again.
func (tk *talkers) key4To16(k uint64) topKey {
	var t topKey
	if tk.src {
		t[0] = mapped4(uint32(k >> 32))
	}
	if tk.dst {
		t[1] = mapped4(uint32(k))
	}
	return t
}

// mapped4 returns the IPv4 address a in its 16-byte, IPv4-mapped form.
func mapped4(a uint32) [16]byte {
	var b [16]byte
	b[10], b[11] = 0xff, 0xff
	b[12], b[13], b[14], b[15] = byte(a>>24), byte(a>>16), byte(a>>8), byte(a)
	return b
}

// addAll hands the sums of es to the TopK and returns es emptied.
func (tk *talkers) addAll(es []pendingEntry) []pendingEntry {
	tk.t.AddAll(es)
	return es[:0]
}

// flush hands the pending sums to the TopK.
func (tk *talkers) flush() {
	p := &tk.pend
	if len(p.ents) == 0 {
		return
	}
	p.ents = tk.addAll(p.ents)
	clear(p.idx4)
	clear(p.idx6)
}

// beginRound starts a dump round, and moves the window to now.
func (tk *talkers) beginRound() {
	tk.advance()
	tk.hot.begin()
}

// endRound ends a dump round, complete or not: what it counted reaches the
// TopK.
func (tk *talkers) endRound(complete bool) {
	tk.flush()
	tk.hot.end(complete)
}

// advance moves the window to now, once per batch of events or dump
// round. Sums not handed over yet belong to the current step: when the
// window is about to move, they reach the TopK first.
func (tk *talkers) advance() {
	if tk.clock().Before(tk.stepEnd) {
		return
	}
	tk.flushBatch()
	tk.flush()
	tk.t.Advance()
	tk.stepEnd = tk.t.StepEnd()
}

// hotFlow is one flow of a dump round: its tuples and what it moved since
// the previous dump.
type hotFlow struct {
	bytes              uint64 // orig + reply, the heap's order
	origBytes          uint64
	replyBytes         uint64
	src, dst           netip.Addr
	replySrc, replyDst netip.Addr
	sport, dport       uint16
	replySPort         uint16
	replyDPort         uint16
	family, proto      uint8
}

// hotFlows keeps the n flows of the running dump round that moved the most
// bytes since the previous dump, in a min-heap: a flow that moved no more
// than the heap's least costs one comparison, so a round is never sorted.
// When the round ends complete, they become the last round's flows. The
// aggregator's mutex guards the heap; mu guards what a reading copies.
type hotFlows struct {
	n     int
	clock func() time.Time
	heap  []hotFlow
	start time.Time // of the running round

	mu sync.Mutex
	// last are the flows of the last complete round, largest first;
	// interval is the time from the start of the round before it to its
	// own start, which their bytes were moved over.
	last     []hotFlow
	interval time.Duration
	prev     time.Time // start of the last complete round
}

// begin starts a round.
func (h *hotFlows) begin() {
	h.heap = h.heap[:0]
	h.start = h.clock()
}

// offer counts flow e of the running round, which moved orig and reply
// bytes since the previous dump.
func (h *hotFlows) offer(e *ctnl.Flow, orig, reply uint64) {
	b := orig + reply
	if b == 0 || len(h.heap) == h.n && b <= h.heap[0].bytes {
		return
	}
	f := hotFlow{
		bytes: b, origBytes: orig, replyBytes: reply,
		src: e.Orig.Src, dst: e.Orig.Dst, sport: e.Orig.SPort, dport: e.Orig.DPort,
		replySrc: e.Reply.Src, replyDst: e.Reply.Dst, replySPort: e.Reply.SPort, replyDPort: e.Reply.DPort,
		family: e.Family, proto: e.Orig.Proto,
	}
	if len(h.heap) < h.n {
		h.heap = append(h.heap, f)
		h.up(len(h.heap) - 1)
		return
	}
	h.heap[0] = f
	h.down(0)
}

// up moves the flow at i up the heap to its place.
func (h *hotFlows) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h.heap[p].bytes <= h.heap[i].bytes {
			return
		}
		h.heap[p], h.heap[i] = h.heap[i], h.heap[p]
		i = p
	}
}

// down moves the flow at i down the heap to its place.
func (h *hotFlows) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h.heap) {
			return
		}
		m := l
		if r := l + 1; r < len(h.heap) && h.heap[r].bytes < h.heap[l].bytes {
			m = r
		}
		if h.heap[i].bytes <= h.heap[m].bytes {
			return
		}
		h.heap[i], h.heap[m] = h.heap[m], h.heap[i]
		i = m
	}
}

// end ends the running round: a complete one's flows become the last
// round's. The first complete round is the baseline, which moved nothing.
func (h *hotFlows) end(complete bool) {
	if !complete {
		return
	}
	// At most n flows: sorting them is cheap, and done once a round.
	slices.SortFunc(h.heap, func(x, y hotFlow) int { return cmp.Compare(y.bytes, x.bytes) })
	h.mu.Lock()
	h.last = append(h.last[:0], h.heap...)
	if !h.prev.IsZero() {
		h.interval = h.start.Sub(h.prev)
	}
	h.prev = h.start
	h.mu.Unlock()
}

// read returns the last round's flows.
func (h *hotFlows) read() ([]TopFlow, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]TopFlow, len(h.last))
	for i := range h.last {
		f := &h.last[i]
		out[i] = TopFlow{
			Family: f.family, Proto: f.proto,
			Src: f.src, Dst: f.dst, SPort: f.sport, DPort: f.dport,
			ReplySrc: f.replySrc, ReplyDst: f.replyDst, ReplySPort: f.replySPort, ReplyDPort: f.replyDPort,
			OrigBytes: f.origBytes, ReplyBytes: f.replyBytes,
		}
		d := delta{Src: f.src, Dst: f.dst, SPort: f.sport, DPort: f.dport,
			ReplySrc: f.replySrc, ReplyDst: f.replyDst, ReplySPort: f.replySPort, ReplyDPort: f.replyDPort}
		out[i].NAT = natClass(&d) != natNone
		if h.interval > 0 {
			out[i].BytesPerSecond = float64(f.bytes) / h.interval.Seconds()
		}
	}
	return out, h.interval
}

// TopFlow is one of the flows that moved the most bytes between the last
// two dumps of live accounting: its original tuple, its reply tuple (which
// differs from the swapped original when NAT is true), and what it moved.
// Ports are 0 for protocols without them.
type TopFlow struct {
	Family, Proto          uint8
	Src, Dst               netip.Addr
	SPort, DPort           uint16
	ReplySrc, ReplyDst     netip.Addr
	ReplySPort, ReplyDPort uint16
	NAT                    bool
	OrigBytes, ReplyBytes  uint64
	// BytesPerSecond is both directions' bytes over the time between
	// the two dumps' starts.
	BytesPerSecond float64
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
	// Flows are the flows that moved the most bytes between the last two
	// dumps, largest first, at most TopConfig.Flows; FlowsInterval is the
	// time between those dumps' starts. Empty without live accounting.
	Flows         []TopFlow
	FlowsInterval time.Duration
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
			a := netip.AddrFrom16(row.Key[0]).Unmap()
			if k == KeyDst {
				a = netip.AddrFrom16(row.Key[1]).Unmap()
			}
			s := a.String()
			if bits := tk.bits(a); bits < a.BitLen() {
				s = netip.PrefixFrom(a, bits).String()
			}
			t.Values = append(t.Values, s)
		}
		r.Talkers = append(r.Talkers, t)
	}
	r.Flows, r.FlowsInterval = tk.hot.read()
	return r
}

// bits returns the prefix length a's family is aggregated to.
func (tk *talkers) bits(a netip.Addr) int {
	if a.Is4() {
		return tk.cfg.IPv4Bits
	}
	return tk.cfg.IPv6Bits
}

// Top returns the top talkers of the last window, largest orig+reply bytes
// first, and the flows of the last dump round that moved the most bytes;
// TopReading.On is false when they are off.
func (p *Pipeline) Top() TopReading {
	return p.agg.readTop(p.agg.cfg.Live)
}

// readTop returns the top talkers, live telling whether live accounting
// feeds them, with the events' sums the TopK has not been handed yet.
func (a *aggregator) readTop(live bool) TopReading {
	if a.top == nil {
		return TopReading{}
	}
	a.mu.Lock()
	a.top.flushBatch()
	a.mu.Unlock()
	return a.top.read(live)
}
