package flow

import (
	"cmp"
	"context"
	"slices"
)

// Reading is a copy of an Aggregator's series, duration histograms and
// counts, taken by Read. It holds data only: naming it is the caller's job.
type Reading struct {
	// Keys are the keys series are grouped by, in order.
	Keys []Key
	// Series holds every series, sorted by key values, the overflow series
	// (whose every key reads "other") last.
	Series []Series
	// Durations holds the flow duration histograms, by family and
	// protocol.
	Durations []Durations
	// Stats are the Aggregator's counts; MaxSeries its series limit.
	Stats     Stats
	MaxSeries int
	// Live tells whether live accounting is on: only then do the Active
	// and TCP fields of the series mean anything.
	Live bool
}

// Series is one series of a Reading.
type Series struct {
	// Values are the text of each key, in Reading.Keys order. They are
	// shared with the Aggregator and must not be changed.
	Values []string
	// Overflow marks the series that sums the key combinations past the
	// series limit.
	Overflow bool
	// Flows counts the flows that ended; the other counters are what the
	// series' flows moved, per direction.
	Flows, OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
	// Active is how many of the series' flows the latest dump listed.
	Active uint64
	// TCP counts the active TCP flows by state, for every state the series
	// has had.
	TCP []StateCount
}

// StateCount is the number of active TCP flows in one state.
type StateCount struct {
	// State is the TCP state as a label value: established, time_wait...
	State string
	Flows uint64
}

// Durations is one flow duration histogram.
type Durations struct {
	// Family and Proto are the label values of the flows observed.
	Family, Proto string
	// Count and Sum are the observations and their sum, in seconds.
	Count uint64
	Sum   float64
	// Buckets holds the cumulative count of observations at or below each
	// bound of DurationBuckets.
	Buckets []uint64
}

// DurationBuckets returns the upper bounds of the duration histograms, in
// seconds: from 1 ms to 7 days.
func DurationBuckets() []float64 {
	return slices.Clone(durationBuckets[:])
}

// Read removes the series idle past SeriesTTL, then returns a copy of every
// series, histogram and count, in a stable order. The lock is held only for
// the copy.
func (a *Aggregator) Read(ctx context.Context) (Reading, error) {
	if err := ctx.Err(); err != nil {
		return Reading{}, err
	}
	now := a.sinceStart()
	a.mu.Lock()
	if a.cfg.SeriesTTL > 0 {
		for k, s := range a.series {
			if now-s.last >= a.cfg.SeriesTTL {
				delete(a.series, k)
				a.dropSeries(s)
				a.expired++
			}
		}
		if a.overflow != nil && now-a.overflow.last >= a.cfg.SeriesTTL {
			a.dropSeries(a.overflow)
			a.overflow = nil
			a.expired++
		}
	}
	type keyed struct {
		key seriesKey
		s   Series
	}
	entries := make([]keyed, 0, len(a.series))
	for k, s := range a.series {
		entries = append(entries, keyed{key: k, s: s.read()})
	}
	var overflow *Series
	if a.overflow != nil {
		o := a.overflow.read()
		o.Overflow = true
		overflow = &o
	}
	hists := make([]histEntry, 0, len(a.hists))
	for k, h := range a.hists {
		hists = append(hists, histEntry{key: k, durationHist: *h})
	}
	r := Reading{Keys: slices.Clone(a.cfg.GroupBy), Stats: a.statsLocked(), MaxSeries: a.cfg.MaxSeries, Live: a.live != nil}
	a.mu.Unlock()

	slices.SortFunc(entries, func(x, y keyed) int { return a.compare(&x.key, &y.key) })
	r.Series = make([]Series, 0, len(entries)+1)
	merged := false
	for i := range entries {
		s := entries[i].s
		if overflow != nil && !merged && a.allOther(&entries[i].key) {
			// This series has the labels of the overflow series: one
			// series of the two.
			s.merge(overflow)
			merged = true
		}
		r.Series = append(r.Series, s)
	}
	if overflow != nil && !merged {
		r.Series = append(r.Series, *overflow)
	}

	slices.SortFunc(hists, func(x, y histEntry) int {
		return cmp.Or(cmp.Compare(x.key.family, y.key.family), cmp.Compare(x.key.proto, y.key.proto))
	})
	for i := range hists {
		h := &hists[i]
		d := Durations{Family: familyName(h.key.family), Proto: ProtoName(h.key.proto), Sum: h.sum, Buckets: make([]uint64, len(durationBuckets))}
		for j := range durationBuckets {
			d.Count += h.counts[j]
			d.Buckets[j] = d.Count
		}
		d.Count += h.counts[len(durationBuckets)]
		r.Durations = append(r.Durations, d)
	}
	return r, nil
}

// histEntry is a copy of one histogram taken by Read.
type histEntry struct {
	key histKey
	durationHist
}

// read copies s as a Reading reports it. a.mu must be held.
func (s *series) read() Series {
	r := Series{
		Values: s.values, Flows: s.flows,
		OrigPackets: s.origPackets, OrigBytes: s.origBytes, ReplyPackets: s.replyPackets, ReplyBytes: s.replyBytes,
		Active: uint64(s.active),
	}
	if s.tcp != nil {
		for st := range tcpStates {
			if s.tcp.seen&(1<<st) != 0 {
				r.TCP = append(r.TCP, StateCount{State: tcpStateNames[st], Flows: uint64(s.tcp.now[st])})
			}
		}
	}
	return r
}

// merge sums the series o into s.
func (s *Series) merge(o *Series) {
	s.Flows += o.Flows
	s.OrigPackets += o.OrigPackets
	s.OrigBytes += o.OrigBytes
	s.ReplyPackets += o.ReplyPackets
	s.ReplyBytes += o.ReplyBytes
	s.Active += o.Active
	for _, oc := range o.TCP {
		i := slices.IndexFunc(s.TCP, func(c StateCount) bool { return c.State == oc.State })
		if i < 0 {
			s.TCP = append(s.TCP, oc)
			continue
		}
		s.TCP[i].Flows += oc.Flows
	}
	slices.SortFunc(s.TCP, func(x, y StateCount) int { return cmp.Compare(tcpStateIndex(x.State), tcpStateIndex(y.State)) })
}

// tcpStateIndex returns the kernel's number of a TCP state name.
func tcpStateIndex(name string) int {
	return slices.Index(tcpStateNames[:], name)
}

// Keys returns the keys the Aggregator groups series by, in order.
func (a *Aggregator) Keys() []Key {
	return slices.Clone(a.cfg.GroupBy)
}
