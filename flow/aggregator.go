package flow

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// Field ids, the indexes of the keys in keys.
const (
	fieldFamily = iota
	fieldProto
	fieldSPort
	fieldDPort
	fieldSrc
	fieldDst
	fieldSrcNet
	fieldDstNet
	fieldZone
	fieldMark
	fieldNAT
)

// durationBuckets are the upper bounds of the flow duration histogram, in
// seconds: from 1 ms to 7 days.
var durationBuckets = [...]float64{.001, .01, .1, .5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 43200, 86400, 604800}

// Config configures conntrack accounting: its series and, for a Pipeline,
// its dumps, sysctls and log.
type Config struct {
	// GroupBy lists the keys of a series, in label and Graphite level
	// order. It must not be empty nor name a key twice.
	GroupBy []Key
	// MaxSeries bounds the number of series, the overflow series
	// included; it must be positive. Once MaxSeries-1 key combinations
	// have a series of their own, the deltas of new ones are summed into
	// one overflow series whose every key reads "other".
	MaxSeries int
	// SeriesTTL, when positive, removes a series at the first Update after
	// it has not been updated for that long. 0 keeps series forever.
	SeriesTTL time.Duration
	// Networks names the networks of the src_net and dst_net keys; nil
	// makes every address read "other".
	Networks *Networks
	// Ports lists the ports the sport and dport keys read as; nil makes
	// ports read as their number.
	Ports *Ports
	// Filter decides which deltas count; nil counts every delta.
	Filter *Filter
	// Top configures the top talkers; off when Top.Count is 0.
	Top TopConfig
	// Live turns on live accounting: a Pipeline dumps the table now and
	// then and follows flows from one dump to the next, so that they are
	// counted while they run, and a DESTROY event adds only what its flow
	// moved since a dump last saw it.
	Live bool
	// PollInterval is the time from the start of one dump of live
	// accounting to the start of the next. 0 adapts it to the table: each
	// dump's processor time divided by DefaultPollCPUShare, between
	// DefaultMinPollInterval and DefaultMaxPollInterval.
	PollInterval time.Duration
	// EventFilter is Filter compiled for the event socket
	// (Filter.EventFilter), which the listeners a Pipeline's Open dials
	// are given (Pipeline.EventFilter); nil judges every event in
	// userspace.
	EventFilter *ctnl.EventFilter
	// EnableAccounting makes Pipeline.Open switch on the sysctls
	// accounting needs, rather than only check them.
	EnableAccounting bool
	// Logger receives what a Pipeline logs; nil discards it.
	Logger *slog.Logger
}

// SeriesStats are the counts conntrack accounting keeps about its series.
type SeriesStats struct {
	// Series is the number of series a Reading holds, the overflow
	// series included: never more than Config.MaxSeries. (An overflow
	// series summed into a series whose keys all read "other" is one.)
	Series int
	// Overflowed counts the deltas summed into the overflow series.
	Overflowed uint64
	// Filtered counts the deltas the Filter rejected.
	Filtered uint64
	// Expired counts the series removed for being idle past SeriesTTL.
	Expired uint64
	// Flows counts the Final deltas counted.
	Flows uint64
}

// seriesKey holds the value of every key of a series; keys the aggregator
// does not group by stay zero. It is comparable and holds no pointers to
// per-event memory, so map lookups do not allocate.
type seriesKey struct {
	src, dst       netip.Addr
	sport, dport   uint32
	mark           uint32
	zone           uint16
	srcNet, dstNet uint16
	family, proto  uint8
	nat            uint8
	// pad fills the struct, so it has no padding and hashes as plain
	// memory (a blank field would not); it is always zero.
	//lint:ignore U1000 read only by the map's hash, as memory.
	pad [3]uint8
}

// counters are the sums of one series.
type counters struct {
	flows                    uint64
	origPackets, origBytes   uint64
	replyPackets, replyBytes uint64
}

// series is one series: its sums, when it was last updated, as time since
// the aggregator started, and its active flows.
type series struct {
	counters
	last time.Duration
	// active is the number of flows the last finished dump listed in the
	// series, activeNext the count of the dump running.
	active, activeNext uint32
	// tcp counts the active TCP flows per state; nil until the series
	// has had one.
	tcp *tcpCounts
	// id is the series' index in aggregator.byID.
	id uint32
	// values are the series' key values as text, in group-by order; nil
	// until the series is first read (sortSeries).
	values []string
	// key is the series' key; zero for the overflow series.
	key seriesKey
}

// tcpCounts are the active TCP flows of a series by state, and the states
// the series has ever had, which keep being reported at 0.
type tcpCounts struct {
	now, next [tcpStates]uint32
	seen      uint16
}

// tcpNext counts one TCP flow in state st in the running dump.
func (s *series) tcpNext(st uint8) {
	if s.tcp == nil {
		s.tcp = &tcpCounts{}
	}
	s.tcp.next[st]++
	s.tcp.seen |= 1 << st
}

// dropDump forgets the counts of a dump that did not finish.
func (s *series) dropDump() {
	s.activeNext = 0
	if s.tcp != nil {
		s.tcp.next = [tcpStates]uint32{}
	}
}

// endDump makes the running dump's counts the series' active flows.
func (s *series) endDump() {
	s.active, s.activeNext = s.activeNext, 0
	if s.tcp != nil {
		s.tcp.now, s.tcp.next = s.tcp.next, [tcpStates]uint32{}
	}
}

// histKey is the family and protocol of a duration histogram.
type histKey struct {
	family, proto uint8
}

// durationHist counts observations per bucket, not cumulated; the last
// bucket counts those above every bound.
type durationHist struct {
	counts [len(durationBuckets) + 1]uint64
	sum    float64
}

// aggregator sums deltas into series; create it with newAggregator. Its
// methods are safe for concurrent use: typically a Pipeline's listener
// feeds it DESTROY events, its poller the dumps of live accounting, while
// scrapes call Read.
type aggregator struct {
	cfg    Config
	fields []int
	// top are the top talkers, nil when off; fed by count.
	top *talkers

	now   func() time.Time
	start time.Time

	mu       sync.Mutex
	series   map[seriesKey]*series
	overflow *series
	hists    map[histKey]*durationHist
	// histFast indexes the histograms of IPv4 (0) and IPv6 (1) by
	// protocol, sparing a map lookup per flow.
	histFast   [2][256]*durationHist
	overflowed uint64
	filtered   uint64
	expired    uint64
	flows      uint64
	// live is the per-flow state of live accounting; nil when it is off.
	live *liveState
	// byID indexes the series, the overflow series included, by id, so
	// that a tracked flow can remember its series; removed series leave
	// nil, and their ids go to freeIDs. epoch changes whenever a series
	// is removed: a flow's remembered series is good only in the epoch
	// it was remembered in.
	byID    []*series
	freeIDs []uint32
	epoch   uint8

	// order holds the series but the overflow series, sorted by key, as
	// of the last Read; series removed since may still be in it (see
	// alive). added holds the series made since, removed counts those
	// removed since: Read sorts only what was added and merges it in.
	order   []*series
	added   []*series
	removed int
	// layout changes whenever a series is added or removed.
	layout uint64
	// other is the series whose every key reads "other", if it exists
	// and is not the overflow series: the overflow series is read as
	// part of it.
	other *series
}

// Validate checks cfg: the keys must be known and not repeated, MaxSeries
// positive, SeriesTTL not negative.
func (cfg *Config) Validate() error {
	if err := checkGroupBy(cfg.GroupBy); err != nil {
		return err
	}
	if cfg.MaxSeries <= 0 {
		return fmt.Errorf("%w %d: must be positive", errMaxSeries, cfg.MaxSeries)
	}
	if cfg.SeriesTTL < 0 {
		return fmt.Errorf("%w %v: must not be negative", errSeriesTTL, cfg.SeriesTTL)
	}
	return cfg.Top.validate()
}

// newAggregator returns an empty aggregator configured by cfg, after
// checking it.
func newAggregator(cfg Config) (*aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.GroupBy = slices.Clone(cfg.GroupBy)
	a := &aggregator{
		cfg:    cfg,
		now:    time.Now,
		series: make(map[seriesKey]*series),
		hists:  make(map[histKey]*durationHist),
		epoch:  1,
	}
	a.start = a.now()
	var err error
	if a.top, err = newTalkers(cfg.Top, func() time.Time { return a.now() }); err != nil {
		return nil, err
	}
	if cfg.Live {
		a.live = newLiveState(a.start)
	}
	for _, k := range cfg.GroupBy {
		a.fields = append(a.fields, k.field())
	}
	return a, nil
}

// sinceStart returns the time since the aggregator started when series
// expire, else 0.
func (a *aggregator) sinceStart() time.Duration {
	if a.cfg.SeriesTTL > 0 {
		return a.now().Sub(a.start)
	}
	return 0
}

// Add counts one delta; a nil delta is ignored.
func (a *aggregator) Add(d *delta) {
	if d == nil {
		return
	}
	now := a.sinceStart()
	a.mu.Lock()
	a.add(d, now)
	a.mu.Unlock()
}

// AddBatch counts every delta of ds, taking the lock once.
func (a *aggregator) AddBatch(ds []delta) {
	now := a.sinceStart()
	a.mu.Lock()
	for i := range ds {
		a.add(&ds[i], now)
	}
	a.mu.Unlock()
}

// add counts d at time now, unless the Filter rejects it. a.mu must be held.
func (a *aggregator) add(d *delta, now time.Duration) {
	if a.cfg.Filter != nil && !a.cfg.Filter.match(d) {
		a.filtered++
		return
	}
	a.count(d, now)
}

// count adds d to its series at time now and returns the series. a.mu must
// be held.
func (a *aggregator) count(d *delta, now time.Duration) *series {
	s := a.seriesOf(d)
	a.countIn(s, d, now)
	return s
}

// seriesOf returns the series of d's keys, made if it is new, or the
// overflow series once there are MaxSeries. a.mu must be held.
func (a *aggregator) seriesOf(d *delta) *series {
	var k seriesKey
	a.key(d, &k)
	s := a.series[k]
	if s == nil {
		// One place is kept for the overflow series: with it, there are
		// never more than MaxSeries.
		if len(a.series) < a.cfg.MaxSeries-1 {
			// The label values are made when the series is first
			// read (sortSeries), not here: in a burst of distinct
			// flows, every event would pay for text nobody reads yet.
			s = a.newSeries()
			s.key = k
			a.series[k] = s
			a.added = append(a.added, s)
			if a.allOther(&k) {
				a.other = s
			}
		} else {
			if a.overflow == nil {
				a.overflow = a.newSeries()
				a.overflow.values = a.values(nil, true)
			}
			s = a.overflow
		}
	}
	return s
}

// countIn adds d to s, its series, at time now, and counts it in
// overflowed when s is the overflow series. a.mu must be held.
func (a *aggregator) countIn(s *series, d *delta, now time.Duration) {
	if s == a.overflow {
		a.overflowed++
	}
	if a.top != nil {
		a.top.add(d)
	}
	s.last = now
	s.origPackets += d.OrigPackets
	s.origBytes += d.OrigBytes
	s.replyPackets += d.ReplyPackets
	s.replyBytes += d.ReplyBytes
	if !d.Final {
		return
	}
	s.flows++
	a.flows++
	if d.Start == 0 || d.Stop == 0 || d.Stop < d.Start {
		return
	}
	dur := float64(d.Stop-d.Start) / 1e9
	var h *durationHist
	fast := d.Family == familyIPv4 || d.Family == familyIPv6
	if fast {
		h = a.histFast[d.Family>>1&1][d.Proto]
	}
	if h == nil {
		hk := histKey{d.Family, d.Proto}
		if h = a.hists[hk]; h == nil {
			h = &durationHist{}
			a.hists[hk] = h
		}
		if fast {
			a.histFast[d.Family>>1&1][d.Proto] = h
		}
	}
	i, _ := slices.BinarySearch(durationBuckets[:], dur)
	h.counts[i]++
	h.sum += dur
}

// newSeries returns an empty series with an id.
func (a *aggregator) newSeries() *series {
	s := &series{}
	if n := len(a.freeIDs); n > 0 {
		s.id = a.freeIDs[n-1]
		a.freeIDs = a.freeIDs[:n-1]
		a.byID[s.id] = s
	} else {
		s.id = uint32(len(a.byID))
		a.byID = append(a.byID, s)
	}
	a.layout++
	return s
}

// alive reports whether s is still one of the aggregator's series.
func (a *aggregator) alive(s *series) bool {
	return int(s.id) < len(a.byID) && a.byID[s.id] == s
}

// dropSeries forgets s, which is no longer in a.series, and makes every
// series a tracked flow remembers stale.
func (a *aggregator) dropSeries(s *series) {
	a.byID[s.id] = nil
	a.freeIDs = append(a.freeIDs, s.id)
	a.removed++
	a.layout++
	if s == a.other {
		a.other = nil
	}
	a.newEpoch()
}

// newEpoch makes every series a tracked flow remembers stale: its next
// count looks its series up by its key.
func (a *aggregator) newEpoch() {
	if a.epoch++; a.epoch == 0 {
		// Epochs came round: no remembered series may look current.
		a.epoch = 1
		if a.live != nil {
			a.live.forgetSeries()
		}
	}
}

// key sets k to the series key of d; k must be zero.
func (a *aggregator) key(d *delta, k *seriesKey) {
	for _, f := range a.fields {
		switch f {
		case fieldFamily:
			k.family = d.Family
		case fieldProto:
			k.proto = d.Proto
		case fieldSPort:
			k.sport = a.cfg.Ports.value(d.Proto, d.SPort)
		case fieldDPort:
			k.dport = a.cfg.Ports.value(d.Proto, d.DPort)
		case fieldSrc:
			k.src = d.Src.Unmap().WithZone("")
		case fieldDst:
			k.dst = d.Dst.Unmap().WithZone("")
		case fieldSrcNet:
			k.srcNet = a.cfg.Networks.lookup(d.Src)
		case fieldDstNet:
			k.dstNet = a.cfg.Networks.lookup(d.Dst)
		case fieldZone:
			k.zone = d.Zone
		case fieldMark:
			k.mark = d.Mark
		case fieldNAT:
			k.nat = natClass(d)
		}
	}
}

// Stats returns the aggregator's counts.
func (a *aggregator) Stats() SeriesStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statsLocked()
}

func (a *aggregator) statsLocked() SeriesStats {
	st := SeriesStats{Series: len(a.series), Overflowed: a.overflowed, Filtered: a.filtered, Expired: a.expired, Flows: a.flows}
	if a.overflow != nil && a.other == nil {
		st.Series++
	}
	return st
}

// values returns the text of every key of k, or "other" for each in the
// overflow series.
func (a *aggregator) values(k *seriesKey, overflow bool) []string {
	vals := make([]string, len(a.fields))
	for i, f := range a.fields {
		if overflow {
			vals[i] = other
		} else {
			vals[i] = a.text(f, k)
		}
	}
	return vals
}

// text returns the label value of field f of k.
func (a *aggregator) text(f int, k *seriesKey) string {
	switch f {
	case fieldFamily:
		return familyName(k.family)
	case fieldProto:
		return ProtoName(k.proto)
	case fieldSPort:
		return a.cfg.Ports.text(k.sport)
	case fieldDPort:
		return a.cfg.Ports.text(k.dport)
	case fieldSrc:
		return addrText(k.src)
	case fieldDst:
		return addrText(k.dst)
	case fieldSrcNet:
		return a.cfg.Networks.name(k.srcNet)
	case fieldDstNet:
		return a.cfg.Networks.name(k.dstNet)
	case fieldZone:
		return strconv.Itoa(int(k.zone))
	case fieldMark:
		return "0x" + strconv.FormatUint(uint64(k.mark), 16)
	case fieldNAT:
		if int(k.nat) < len(natNames) {
			return natNames[k.nat]
		}
	}
	return other
}

// addrText returns the label value of address a.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	return a.String()
}

// allOther reports whether every key of k reads "other".
func (a *aggregator) allOther(k *seriesKey) bool {
	for _, f := range a.fields {
		switch {
		case f == fieldSPort && k.sport == portOther:
		case f == fieldDPort && k.dport == portOther:
		case f == fieldSrcNet && k.srcNet == 0:
		case f == fieldDstNet && k.dstNet == 0:
		default:
			return false
		}
	}
	return true
}

// compare orders series keys by their fields in group-by order.
func (a *aggregator) compare(x, y *seriesKey) int {
	for _, f := range a.fields {
		var c int
		switch f {
		case fieldFamily:
			c = cmp.Compare(x.family, y.family)
		case fieldProto:
			c = cmp.Compare(x.proto, y.proto)
		case fieldSPort:
			c = cmp.Compare(x.sport, y.sport)
		case fieldDPort:
			c = cmp.Compare(x.dport, y.dport)
		case fieldSrc:
			c = x.src.Compare(y.src)
		case fieldDst:
			c = x.dst.Compare(y.dst)
		case fieldSrcNet:
			c = cmp.Compare(x.srcNet, y.srcNet)
		case fieldDstNet:
			c = cmp.Compare(x.dstNet, y.dstNet)
		case fieldZone:
			c = cmp.Compare(x.zone, y.zone)
		case fieldMark:
			c = cmp.Compare(x.mark, y.mark)
		case fieldNAT:
			c = cmp.Compare(x.nat, y.nat)
		}
		if c != 0 {
			return c
		}
	}
	return 0
}
