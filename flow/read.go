package flow

import (
	"cmp"
	"context"
	"slices"
)

// Reading is a copy of a Pipeline's series, duration histograms and
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
	// Stats are the counts of the series; MaxSeries their limit.
	Stats     SeriesStats
	MaxSeries int
	// Live tells whether live accounting is on: only then do the Active
	// and TCP fields of the series mean anything.
	Live bool
	// Layout identifies which series Series holds: two Readings of one
	// Pipeline with the same Layout hold the same series (the same IDs
	// and Values) in the same order. It changes whenever a series is
	// added or removed.
	Layout uint64
}

// Series is one series of a Reading.
type Series struct {
	// ID identifies the series for as long as it lives: the series of a
	// Reading have distinct IDs, and a series keeps its ID from one
	// Reading to the next. Once a series is removed, its ID may go to a
	// new series. IDs are small numbers, below the most series the
	// Pipeline has held at once plus one: they can index a slice.
	ID uint32
	// Values are the text of each key, in Reading.Keys order. They are
	// shared with the Pipeline and must not be changed.
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
func (a *aggregator) Read(ctx context.Context) (Reading, error) {
	var r Reading
	err := a.ReadInto(ctx, &r)
	return r, err
}

// ReadInto is Read into r, reusing the memory r holds from an earlier
// reading: the series and their TCP counts. Nothing r held before may be
// used afterwards but what ReadInto put there. The series are kept sorted
// from one reading to the next: only the series added since the last
// reading are sorted, and the copy is the only cost of the others.
func (a *aggregator) ReadInto(ctx context.Context, r *Reading) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := a.sinceStart()
	series := r.Series[:0]
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
	a.sortSeries()
	if n := len(a.order) + 1; cap(series) < n {
		series = slices.Grow(series, n)
	}
	for _, s := range a.order {
		series = s.readInto(series)
		if s == a.other && a.overflow != nil {
			// The overflow series has the labels of this one: they
			// are one series.
			series[len(series)-1].merge(a.overflow)
		}
	}
	if a.overflow != nil && a.other == nil {
		series = a.overflow.readInto(series)
		series[len(series)-1].Overflow = true
	}
	histList := make([]histEntry, 0, len(a.hists))
	for k, h := range a.hists {
		histList = append(histList, histEntry{key: k, durationHist: *h})
	}
	keys := r.Keys
	*r = Reading{
		Keys: keys, Series: series, Stats: a.statsLocked(), MaxSeries: a.cfg.MaxSeries,
		Live: a.live != nil, Layout: a.layout,
	}
	a.mu.Unlock()
	if !slices.Equal(r.Keys, a.cfg.GroupBy) {
		r.Keys = slices.Clone(a.cfg.GroupBy)
	}

	slices.SortFunc(histList, func(x, y histEntry) int {
		return cmp.Or(cmp.Compare(x.key.family, y.key.family), cmp.Compare(x.key.proto, y.key.proto))
	})
	for i := range histList {
		h := &histList[i]
		d := Durations{Family: familyName(h.key.family), Proto: ProtoName(h.key.proto), Sum: h.sum, Buckets: make([]uint64, len(durationBuckets))}
		for j := range durationBuckets {
			d.Count += h.counts[j]
			d.Buckets[j] = d.Count
		}
		d.Count += h.counts[len(durationBuckets)]
		r.Durations = append(r.Durations, d)
	}
	return nil
}

// sortSeries brings a.order up to date: the series removed since the last
// call leave it, those added are sorted and merged in. a.mu must be held.
func (a *aggregator) sortSeries() {
	if a.removed == 0 && len(a.added) == 0 {
		return
	}
	if a.removed > 0 {
		a.order = slices.DeleteFunc(a.order, func(s *series) bool { return !a.alive(s) })
		a.added = slices.DeleteFunc(a.added, func(s *series) bool { return !a.alive(s) })
	}
	a.removed = 0
	if len(a.added) == 0 {
		return
	}
	for _, s := range a.added {
		s.values = a.values(&s.key, false)
	}
	cmpSeries := func(x, y *series) int { return a.compare(&x.key, &y.key) }
	slices.SortFunc(a.added, cmpSeries)
	// Merge from the end, in place: a.order grows by what was added.
	n, m := len(a.order), len(a.added)
	a.order = slices.Grow(a.order, m)[:n+m]
	i, j := n-1, m-1
	for k := n + m - 1; j >= 0; k-- {
		if i >= 0 && cmpSeries(a.order[i], a.added[j]) > 0 {
			a.order[k] = a.order[i]
			i--
		} else {
			a.order[k] = a.added[j]
			j--
		}
	}
	clear(a.added)
	a.added = a.added[:0]
}

// histEntry is a copy of one histogram taken by Read.
type histEntry struct {
	key histKey
	durationHist
}

// readInto appends a copy of s as a Reading reports it to dst, reusing the
// memory of the TCP counts of the series it overwrites. a.mu must be held.
func (s *series) readInto(dst []Series) []Series {
	var tcp []StateCount
	if len(dst) < cap(dst) {
		tcp = dst[:len(dst)+1][len(dst)].TCP[:0]
	}
	if s.tcp != nil {
		for st := range tcpStates {
			if s.tcp.seen&(1<<st) != 0 {
				tcp = append(tcp, StateCount{State: tcpStateNames[st], Flows: uint64(s.tcp.now[st])})
			}
		}
	}
	if len(tcp) == 0 {
		// A series that never had TCP flows has none, not an empty list.
		tcp = nil
	}
	return append(dst, Series{
		ID: s.id, Values: s.values, Flows: s.flows,
		OrigPackets: s.origPackets, OrigBytes: s.origBytes, ReplyPackets: s.replyPackets, ReplyBytes: s.replyBytes,
		Active: uint64(s.active), TCP: tcp,
	})
}

// merge sums the series s into r.
func (r *Series) merge(s *series) {
	var o [1]Series
	r.add(&s.readInto(o[:0])[0])
}

// add sums the series o into s.
func (s *Series) add(o *Series) {
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

// Keys returns the keys the aggregator groups series by, in order.
func (a *aggregator) Keys() []Key {
	return slices.Clone(a.cfg.GroupBy)
}
