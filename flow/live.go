package flow

import (
	"net/netip"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// TCP states as the kernel numbers them (enum tcp_conntrack).
const (
	tcpNone uint8 = iota
	tcpSynSent
	tcpSynRecv
	tcpEstablished
	tcpFinWait
	tcpCloseWait
	tcpLastAck
	tcpTimeWait
	tcpClose
	tcpSynSent2
	tcpStates
)

var tcpStateNames = [tcpStates]string{
	tcpNone:        "none",
	tcpSynSent:     "syn_sent",
	tcpSynRecv:     "syn_recv",
	tcpEstablished: "established",
	tcpFinWait:     "fin_wait",
	tcpCloseWait:   "close_wait",
	tcpLastAck:     "last_ack",
	tcpTimeWait:    "time_wait",
	tcpClose:       "close",
	tcpSynSent2:    "syn_sent2",
}

// keyTail is the part of a flow's identity that does not depend on its
// address family. For ICMP, sport holds the identifier and dport the type
// and code.
type keyTail struct {
	sport, dport uint16
	zone         uint16
	proto        uint8
	_            uint8
	id           uint32
	start        int64
}

// key4 and key6 identify a tracked flow: zone, original tuple, the kernel's
// id and the start time, since an id alone can come back. They hold no
// pointers, so the garbage collector never scans the tables.
type key4 struct {
	src, dst [4]byte
	keyTail
}

type key6 struct {
	src, dst [16]byte
	keyTail
}

// Record states.
const (
	stateEmpty  uint8 = iota // a free slot of a table
	stateLive                // seen in the latest dump, or looked up since
	stateGone                // missing from a dump and from a lookup: closed out once safe
	stateDead                // its DESTROY event was counted: a tombstone
	stateClosed              // closed out without DESTROY: a tombstone
)

// hash returns a hash of k's kernel id and start time.
func (k key4) hash() uint64 { return idHash(k.id, k.start) }

// hash returns a hash of k's kernel id and start time.
func (k key6) hash() uint64 { return idHash(k.id, k.start) }

// idHash is the hash of a flow's identity: its kernel id and start time.
func idHash(id uint32, start int64) uint64 { return uint64(id)<<32 ^ uint64(start) }

// record is what is kept of a tracked flow: the counters last counted, and
// what its series key needs beyond its identity.
type record struct {
	counts [4]uint64 // orig packets, orig bytes, reply packets, reply bytes
	mark   uint32
	// gen is the dump that last saw the flow while it lives; once it is a
	// tombstone or gone, the dump it was marked in.
	gen   uint32
	state uint8
	nat   uint8
	tcp   uint8
	// epoch is the aggregator's epoch when aux was set to the flow's
	// series; 0 when it remembers none.
	epoch uint8
	// aux is the id of the flow's series while it lives, and when it was
	// closed out, in seconds since live accounting began, once it is.
	aux uint32
}

// closedKeep is how long a flow closed out without DESTROY is remembered,
// so that a DESTROY event delivered late (in reliable mode the kernel sends
// failed ones again) adds only the rest.
const closedKeep = 120 // seconds

// liveNow returns the time since live accounting began, in seconds.
func (a *aggregator) liveNow() uint32 {
	return uint32((a.now().UnixNano() - a.live.start) / 1e9)
}

// LiveStats are the counts of live accounting.
type LiveStats struct {
	// Tracked is the number of flows followed from dump to dump, Tombstones
	// the ended ones kept until a later dump has finished.
	Tracked, Tombstones int
	// Dumps is the number of dumps finished; Entries is how many entries
	// the latest one listed that the filters accept.
	Dumps   uint64
	Entries int
	// Filtered counts the entries that dumps (and lookups of flows a dump
	// missed) listed and the filters rejected, once per listing: an entry
	// rejected by every dump of its life counts once per dump. Entries
	// the kernel's dump filter skipped are not listed, and counted nowhere.
	Filtered uint64
	// Resets counts flows whose counters went down: another tool zeroed
	// them (conntrack -L -z), or a new flow took the old one's identity.
	Resets uint64
	// ClosedOut counts flows that left the table without a DESTROY event
	// reaching the exporter (created while no listener existed, or an
	// event lost), counted from the dumps instead.
	ClosedOut uint64
	// LateDestroys counts DESTROY events of flows already closed out.
	LateDestroys uint64
	// TableBytes is the memory the tracked flows and tombstones take.
	TableBytes int
}

// liveState is the per-flow state of live accounting. The aggregator's
// mutex guards it.
type liveState struct {
	start          int64 // when accounting began, Unix nanoseconds
	v4             *table[key4]
	v6             *table[key6]
	started, ended uint32 // dumps started and finished
	entries        int    // entries of the dump running or last finished
	stats          LiveStats
	sink           uint32 // keeps prefetch's loads from being left out
	// h4 and h6 are prefetch's scratch.
	h4, h6 [touchMax]uint64
}

func newLiveState(now time.Time) *liveState {
	return &liveState{start: now.UnixNano(), v4: newTable[key4](), v6: newTable[key6]()}
}

// prefetch reads the index slot where each flow of the events fs is looked
// for, then the records there whose tag matches, so that the memory loads
// of a batch overlap rather than wait one after the other: on a table of a
// million flows nearly every lookup of an event misses the caches twice,
// in the index and in the records. (Dumps read the table in order and need
// none.)
//
// fs must hold at most touchMax events.
func (l *liveState) prefetch(fs []ctnl.Flow) {
	h4, h6 := l.h4[:0], l.h6[:0]
	for i := range fs {
		e := &fs[i]
		if e.Family == familyIPv6 {
			h6 = append(h6, idHash(e.ID, e.Start))
		} else {
			h4 = append(h4, idHash(e.ID, e.Start))
		}
	}
	if len(h4) > 0 {
		l.sink += l.v4.touch(h4)
	}
	if len(h6) > 0 {
		l.sink += l.v6.touch(h6)
	}
}

// keyOf returns the identity of e but its addresses.
func keyOf(e *ctnl.Flow) keyTail {
	o := &e.Orig
	t := keyTail{sport: o.SPort, dport: o.DPort, zone: e.Zone, proto: o.Proto, id: e.ID, start: e.Start}
	if o.Proto == ProtoICMP || o.Proto == ProtoICMPv6 {
		t.sport, t.dport = o.ICMPID, uint16(o.ICMPType)<<8|uint16(o.ICMPCode)
	}
	return t
}

// flowOf rebuilds the identity of a tracked flow as a ctnl.Flow, as a lookup
// takes it.
func flowOf(family uint8, src, dst netip.Addr, t keyTail, r *record) ctnl.Flow {
	e := ctnl.Flow{Family: family, Orig: ctnl.Tuple{Proto: t.proto, Src: src, Dst: dst}, Zone: t.zone, Mark: r.mark, ID: t.id, Start: t.start}
	if t.proto == ProtoICMP || t.proto == ProtoICMPv6 {
		e.Orig.ICMPID, e.Orig.ICMPType, e.Orig.ICMPCode = t.sport, uint8(t.dport>>8), uint8(t.dport)
	} else {
		e.Orig.SPort, e.Orig.DPort = t.sport, t.dport
	}
	return e
}

// countsOf returns e's counters in record order.
func countsOf(e *ctnl.Flow) [4]uint64 {
	return [4]uint64{e.OrigPackets, e.OrigBytes, e.ReplyPackets, e.ReplyBytes}
}

// since returns what moved between the counters last counted and now. A
// counter that went down was zeroed (or belongs to a new flow): all of its
// value is new.
func since(last, now [4]uint64) (d [4]uint64, reset bool) {
	for i := range now {
		if now[i] >= last[i] {
			d[i] = now[i] - last[i]
		} else {
			d[i], reset = now[i], true
		}
	}
	return d, reset
}

// deltaOf fills d with the keys of e and the counters c.
func deltaOf(e *ctnl.Flow, c [4]uint64, d *delta) {
	// Field by field: a composite literal would be built aside and then
	// copied with write barriers, as the addresses hold pointers.
	d.Family, d.Proto = e.Family, e.Orig.Proto
	d.Src, d.Dst, d.SPort, d.DPort = e.Orig.Src, e.Orig.Dst, e.Orig.SPort, e.Orig.DPort
	d.ReplySrc, d.ReplyDst, d.ReplySPort, d.ReplyDPort = e.Reply.Src, e.Reply.Dst, e.Reply.SPort, e.Reply.DPort
	d.Zone, d.Mark = e.Zone, e.Mark
	d.OrigPackets, d.OrigBytes, d.ReplyPackets, d.ReplyBytes = c[0], c[1], c[2], c[3]
	d.Start, d.Stop = e.Start, e.Stop
	d.natSet, d.nat = false, 0
}

// countDestroyed counts the DESTROY events of es. Without live accounting each
// counts its flow's whole counters. With it, an event adds what the flow
// moved since a dump last saw it and ends the flow; the flow is then kept as
// a tombstone until a dump that began after the event has finished, so that
// a dump still listing it counts nothing twice.
func (a *aggregator) countDestroyed(es []ctnl.Flow) {
	now := a.sinceStart()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.top != nil {
		a.top.advance()
		a.top.beginBatch()
		defer a.top.endBatch()
	}
	var d delta
	for i := range es {
		if a.live != nil && i%touchMax == 0 {
			a.live.prefetch(es[i:min(i+touchMax, len(es))])
		}
		e := &es[i]
		deltaOf(e, countsOf(e), &d)
		d.Final = true
		if a.live == nil {
			a.add(&d, now)
			continue
		}
		if a.cfg.Filter != nil && !a.cfg.Filter.match(&d) {
			a.filtered++
			continue
		}
		if e.Family == familyIPv6 {
			destroyed(a, a.live.v6, key6{src: e.Orig.Src.As16(), dst: e.Orig.Dst.As16(), keyTail: keyOf(e)}, e, &d, now)
		} else {
			destroyed(a, a.live.v4, key4{src: e.Orig.Src.Unmap().As4(), dst: e.Orig.Dst.Unmap().As4(), keyTail: keyOf(e)}, e, &d, now)
		}
	}
}

// destroyed counts the DESTROY event of e, whose key is k; d holds e's keys
// and final counters. a.mu must be held.
func destroyed[K flowKey](a *aggregator, t *table[K], k K, e *ctnl.Flow, d *delta, now time.Duration) {
	l := a.live
	final := countsOf(e)
	r, added := t.put(&k)
	// A flow followed already, whose mark has not changed, goes straight
	// to the series it remembers, as in dumped.
	var s *series
	switch {
	case added:
		// Never seen by a dump: it began after the last one, or it was
		// in the table before accounting began and no dump listed it.
		if e.Start != 0 && e.Start < l.start {
			d.OrigPackets, d.OrigBytes, d.ReplyPackets, d.ReplyBytes = 0, 0, 0, 0
		}
		r.mark = e.Mark
	case r.state == stateDead:
		return // counted already
	default:
		c, reset := since(r.counts, final)
		if reset {
			l.stats.Resets++
		}
		d.OrigPackets, d.OrigBytes, d.ReplyPackets, d.ReplyBytes = c[0], c[1], c[2], c[3]
		if r.state == stateClosed {
			// Closed out as ended already: add the rest only.
			d.Final = false
			l.stats.LateDestroys++
		} else if r.mark == e.Mark && r.epoch == a.epoch {
			s = a.byID[r.aux]
		}
	}
	if s == nil {
		s = a.seriesOf(d)
	}
	a.countIn(s, d, now)
	r.counts, r.state, r.gen = final, stateDead, l.started
}

// beginDump starts a dump of the table and returns its number, counted from
// 1, and the filter to pass to the kernel with it, so that it skips entries
// the filters would reject. The first dump is the baseline: the flows it
// lists count only what they move from then on.
func (a *aggregator) beginDump() (uint32, ctnl.DumpFilter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	filter := dumpFilterFor(a.cfg.Filter)
	if a.live == nil {
		return 0, filter
	}
	a.live.started++
	a.live.entries = 0
	if a.top != nil {
		a.top.beginRound()
	}
	a.live.v4.beginDump()
	a.live.v6.beginDump()
	return a.live.started, filter
}

// countDumped counts what the entries of a running dump moved since a dump
// last saw them, and counts them as active in their series. An entry the
// filter rejects is not followed; it is counted in LiveStats.Filtered. A
// flow first seen in the baseline, or that began before accounting began,
// starts from its counters as they are; a flow that began since counts from
// zero.
func (a *aggregator) countDumped(es []ctnl.Flow) {
	now := a.sinceStart()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live == nil {
		return
	}
	var d delta
	for i := range es {
		e := &es[i]
		if e.Family == familyIPv6 {
			dumped(a, a.live.v6, key6{src: e.Orig.Src.As16(), dst: e.Orig.Dst.As16(), keyTail: keyOf(e)}, e, &d, now)
		} else {
			dumped(a, a.live.v4, key4{src: e.Orig.Src.Unmap().As4(), dst: e.Orig.Dst.Unmap().As4(), keyTail: keyOf(e)}, e, &d, now)
		}
	}
}

// dumped counts the dumped entry e, whose key is k. A flow followed already,
// whose mark has not changed, goes straight to the series it remembers;
// others are keyed and filtered first. a.mu must be held.
func dumped[K flowKey](a *aggregator, t *table[K], k K, e *ctnl.Flow, d *delta, now time.Duration) {
	l := a.live
	r := t.next(&k)
	if r != nil && (r.state == stateLive || r.state == stateGone) && r.mark == e.Mark && r.epoch == a.epoch {
		if s := a.byID[r.aux]; s != nil {
			l.entries++
			cur := countsOf(e)
			c, reset := since(r.counts, cur)
			if reset {
				l.stats.Resets++
			}
			r.counts, r.state, r.gen, r.tcp = cur, stateLive, l.started, e.TCPState
			s.last = now
			s.origPackets += c[0]
			s.origBytes += c[1]
			s.replyPackets += c[2]
			s.replyBytes += c[3]
			if s == a.overflow && c[0]|c[1]|c[2]|c[3] != 0 {
				a.overflowed++
			}
			if a.top != nil {
				a.top.dumped(e, &c)
			}
			s.activeNext++
			if e.Orig.Proto == ProtoTCP && e.TCPState < tcpStates {
				s.tcpNext(e.TCPState)
			}
			return
		}
	}
	deltaOf(e, [4]uint64{}, d)
	if a.cfg.Filter != nil && !a.cfg.Filter.match(d) {
		l.stats.Filtered++
		if r != nil && (r.state == stateLive || r.state == stateGone) {
			// Its mark changed to one the filters reject: follow it
			// without counting it.
			r.counts, r.state, r.gen, r.mark, r.epoch = countsOf(e), stateLive, l.started, e.Mark, 0
		}
		return
	}
	l.entries++
	observe(a, t, k, e, d, now)
}

// observe counts the dumped entry e, whose key is k; d holds e's keys. a.mu
// must be held.
func observe[K flowKey](a *aggregator, t *table[K], k K, e *ctnl.Flow, d *delta, now time.Duration) {
	l := a.live
	cur := countsOf(e)
	r, added := t.put(&k)
	switch {
	case added:
		r.mark = e.Mark
		baseline := e.Start != 0 && e.Start < l.start || e.Start == 0 && l.ended == 0
		if !baseline {
			d.OrigPackets, d.OrigBytes, d.ReplyPackets, d.ReplyBytes = cur[0], cur[1], cur[2], cur[3]
		}
	case r.state == stateDead || r.state == stateClosed:
		return // ended: the dump saw it before it was unlinked
	default:
		c, reset := since(r.counts, cur)
		if reset {
			l.stats.Resets++
		}
		d.OrigPackets, d.OrigBytes, d.ReplyPackets, d.ReplyBytes = c[0], c[1], c[2], c[3]
	}
	if a.top != nil {
		a.top.hot.offer(e, d.OrigBytes, d.ReplyBytes)
	}
	r.nat = natClass(d)
	r.counts, r.state, r.gen, r.tcp, r.mark = cur, stateLive, l.started, e.TCPState, e.Mark
	s := a.count(d, now)
	r.aux, r.epoch = s.id, a.epoch
	s.activeNext++
	if e.Orig.Proto == ProtoTCP && e.TCPState < tcpStates {
		s.tcpNext(e.TCPState)
	}
}

// forgetSeries makes every tracked flow forget its series.
func (l *liveState) forgetSeries() {
	for i := range l.v4.recs {
		l.v4.recs[i].rec.epoch = 0
	}
	for i := range l.v6.recs {
		l.v6.recs[i].rec.epoch = 0
	}
}

// missing returns the flows followed that the running dump did not list, so
// that the caller can ask the kernel for each: a dump may miss entries while
// the table changes.
func (a *aggregator) missing() []ctnl.Flow {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live == nil {
		return nil
	}
	var out []ctnl.Flow
	for i := range a.live.v4.recs {
		s := &a.live.v4.recs[i]
		if s.rec.state == stateLive && s.rec.gen != a.live.started {
			out = append(out, flowOf(familyIPv4, netip.AddrFrom4(s.key.src), netip.AddrFrom4(s.key.dst), s.key.keyTail, &s.rec))
		}
	}
	for i := range a.live.v6.recs {
		s := &a.live.v6.recs[i]
		if s.rec.state == stateLive && s.rec.gen != a.live.started {
			out = append(out, flowOf(familyIPv6, netip.AddrFrom16(s.key.src), netip.AddrFrom16(s.key.dst), s.key.keyTail, &s.rec))
		}
	}
	return out
}

// markGone marks flows the running dump missed and the kernel no longer holds.
// Unless a DESTROY event or a dump shows them meanwhile, endDump closes them
// out once the caller knows that no DESTROY event of theirs can still come:
// they count as ended, with what they moved until a dump last saw them.
func (a *aggregator) markGone(es []ctnl.Flow) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live == nil {
		return
	}
	for i := range es {
		e := &es[i]
		if e.Family == familyIPv6 {
			gone(a.live.v6, key6{src: e.Orig.Src.As16(), dst: e.Orig.Dst.As16(), keyTail: keyOf(e)}, a.live.started)
		} else {
			gone(a.live.v4, key4{src: e.Orig.Src.Unmap().As4(), dst: e.Orig.Dst.Unmap().As4(), keyTail: keyOf(e)}, a.live.started)
		}
	}
}

func gone[K flowKey](t *table[K], k K, gen uint32) {
	if r := t.get(&k); r != nil && r.state == stateLive {
		r.state, r.gen = stateGone, gen
	}
}

// endDump finishes the running dump: it drops the tombstones of flows that
// ended before this dump began, closes out the flows marked gone by dumps up
// to closeThrough and, when the dump was complete, makes the flows it counted
// the active flows of their series. A dump that failed half-way leaves the
// active flows as they were.
func (a *aggregator) endDump(complete bool, closeThrough uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.live
	if l == nil {
		return
	}
	now := a.liveNow()
	ttlNow := a.sinceStart()
	tracked, tombs := 0, 0
	sweep := func(r *record) (keep bool) {
		switch {
		case r.state == stateDead && r.gen < l.started:
			return false
		case r.state == stateClosed && r.gen < l.started && now-r.aux >= closedKeep:
			return false
		case r.state == stateGone && r.gen <= closeThrough:
			l.stats.ClosedOut++
			r.state, r.gen, r.aux, r.epoch = stateClosed, l.started, now, 0
			return true
		}
		return true
	}
	// visit sweeps r and counts it if it stays; closing reports that it was
	// closed out just now, for the caller to count the rest of its flow.
	visit := func(r *record) (keep, closing bool) {
		was := r.state
		if !sweep(r) {
			return false, false
		}
		if r.state == stateLive || r.state == stateGone {
			tracked++
		} else {
			tombs++
		}
		return true, was == stateGone && r.state == stateClosed
	}
	var d delta
	l.v4.sweep(func(k *key4, r *record) bool {
		keep, closing := visit(r)
		if closing {
			a.closeOut(flowOf(familyIPv4, netip.AddrFrom4(k.src), netip.AddrFrom4(k.dst), k.keyTail, r), r, &d, ttlNow)
		}
		return keep
	}, complete)
	l.v6.sweep(func(k *key6, r *record) bool {
		keep, closing := visit(r)
		if closing {
			a.closeOut(flowOf(familyIPv6, netip.AddrFrom16(k.src), netip.AddrFrom16(k.dst), k.keyTail, r), r, &d, ttlNow)
		}
		return keep
	}, complete)
	l.stats.TableBytes = l.v4.bytes() + l.v6.bytes()
	l.stats.Tracked, l.stats.Tombstones = tracked, tombs
	if a.top != nil {
		a.top.endRound(complete)
	}
	if !complete {
		for _, s := range a.series {
			s.dropDump()
		}
		if a.overflow != nil {
			a.overflow.dropDump()
		}
		return
	}
	l.ended++
	l.stats.Dumps++
	l.stats.Entries = l.entries
	for _, s := range a.series {
		s.endDump()
	}
	if a.overflow != nil {
		a.overflow.endDump()
	}
}

// closeOut ends the flow of e, whose record is r, with nothing more to add:
// what it moved until a dump last saw it is counted already.
func (a *aggregator) closeOut(e ctnl.Flow, r *record, d *delta, now time.Duration) {
	deltaOf(&e, [4]uint64{}, d)
	d.natSet, d.nat = true, r.nat
	d.Final = true
	d.Start = 0 // no stop time: no duration to observe
	a.count(d, now)
}

// liveStats returns the counts of live accounting, and false when it is off.
func (a *aggregator) liveStats() (LiveStats, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live == nil {
		return LiveStats{}, false
	}
	return a.live.stats, true
}

// resetLive forgets every flow followed, for a namespace that is gone or was
// replaced: the flows still alive in it count as ended, closed out with what
// the dumps saw of them, and the next dump is a baseline again. Series and
// their sums stay.
func (a *aggregator) resetLive() {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.live
	if l == nil {
		return
	}
	now := a.sinceStart()
	var d delta
	for i := range l.v4.recs {
		s := &l.v4.recs[i]
		if s.rec.state == stateLive || s.rec.state == stateGone {
			a.closeOut(flowOf(familyIPv4, netip.AddrFrom4(s.key.src), netip.AddrFrom4(s.key.dst), s.key.keyTail, &s.rec), &s.rec, &d, now)
			l.stats.ClosedOut++
		}
	}
	for i := range l.v6.recs {
		s := &l.v6.recs[i]
		if s.rec.state == stateLive || s.rec.state == stateGone {
			a.closeOut(flowOf(familyIPv6, netip.AddrFrom16(s.key.src), netip.AddrFrom16(s.key.dst), s.key.keyTail, &s.rec), &s.rec, &d, now)
			l.stats.ClosedOut++
		}
	}
	l.v4.free()
	l.v6.free()
	l.v4, l.v6 = newTable[key4](), newTable[key6]()
	l.start, l.ended, l.entries = a.now().UnixNano(), 0, 0
	l.stats.Tracked, l.stats.Tombstones, l.stats.TableBytes = 0, 0, l.v4.bytes()+l.v6.bytes()
	for _, s := range a.series {
		s.activeNext = 0
		s.endDump()
	}
	if a.overflow != nil {
		a.overflow.activeNext = 0
		a.overflow.endDump()
	}
}
