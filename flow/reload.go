package flow

import (
	"fmt"
	"slices"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// Update is what a reload of the configuration file may change in a running
// Pipeline: the networks, the port list and the filters. The keys series are
// grouped by, their limit, live accounting and the top talkers stay as New
// set them.
type Update struct {
	// Networks, Ports and Filter replace those of Config; nil as there.
	Networks *Networks
	Ports    *Ports
	Filter   *Filter
	// EventFilter is Filter compiled for the event socket, which the
	// listener runs instead of the former program; nil judges every event
	// in userspace.
	EventFilter *ctnl.EventFilter
}

// Reconfigured says what Reconfigure did to the series.
type Reconfigured struct {
	// Kept counts the series that continue with their sums: every key of
	// theirs reads the same under the Update. Removed counts the others,
	// whose keys the Update no longer makes (a network renamed or
	// removed, a port that now reads as another value): their flows now
	// count in the series of their new keys, which start from zero.
	Kept, Removed int
}

// Reconfigure applies u while the pipeline counts, between two batches of
// events or dumped entries, without losing a sum or live accounting's
// baseline: a series whose keys read the same under u keeps its sums; the
// others are removed (Reconfigured); the flows live accounting follows keep
// what the dumps saw of them, and count what they move from now on in the
// series u gives them. Filters judge what is counted from now on: a flow a
// new filter lets in is counted from the next dump as one that began since
// the last (from zero if it began after accounting did, else from what it
// moves from then on).
//
// The listener running gets u.EventFilter first; if the kernel refuses it,
// Reconfigure changes nothing and returns the error. Listeners that later
// Opens dial get it too (EventFilter).
func (p *Pipeline) Reconfigure(u Update) (Reconfigured, error) {
	p.reconf.Lock()
	defer p.reconf.Unlock()
	p.mu.Lock()
	if s := p.running; s != nil && s.filter != u.EventFilter {
		if err := s.conns.Listener.SetFilter(u.EventFilter); err != nil {
			p.mu.Unlock()
			return Reconfigured{}, fmt.Errorf("%w: %w", errEventFilter, err)
		}
		s.filter = u.EventFilter
	}
	p.eventFilter = u.EventFilter
	p.mu.Unlock()
	return p.agg.reconfigure(u), nil
}

// reconfigure makes the aggregator key and filter by u from now on: the
// series whose every key reads the same under u continue under their key of
// u, the others are removed; every tracked flow forgets its series, so that
// its next count is keyed by u.
func (a *aggregator) reconfigure(u Update) Reconfigured {
	a.mu.Lock()
	defer a.mu.Unlock()
	from := a.cfg
	a.cfg.Networks, a.cfg.Ports, a.cfg.Filter, a.cfg.EventFilter = u.Networks, u.Ports, u.Filter, u.EventFilter
	var r Reconfigured
	moved := false
	for k, s := range a.series {
		nk, ok := a.rekey(&from, k)
		switch {
		case !ok:
			delete(a.series, k)
			a.dropSeries(s)
			r.Removed++
		case nk != k:
			// The id of its network or range moved: the map is made
			// again below, once every series has its new key.
			s.key = nk
			moved = true
			r.Kept++
		default:
			r.Kept++
		}
	}
	if moved {
		next := make(map[seriesKey]*series, len(a.series))
		for _, s := range a.series {
			next[s.key] = s
		}
		a.series = next
	}
	a.other = nil
	for _, s := range a.series {
		if a.allOther(&s.key) {
			a.other = s
		}
	}
	a.sortSeries()
	// Network ids follow the names' order, so the series stay in order
	// unless ranges were listed in another order.
	cmpSeries := func(x, y *series) int { return a.compare(&x.key, &y.key) }
	if moved && !slices.IsSortedFunc(a.order, cmpSeries) {
		slices.SortFunc(a.order, cmpSeries)
	}
	a.layout++
	a.newEpoch()
	return r
}

// rekey returns the key under a.cfg of the series whose key was k under
// from, and whether every key reads the same under both.
func (a *aggregator) rekey(from *Config, k seriesKey) (seriesKey, bool) {
	ok := true
	for _, f := range a.fields {
		var same bool
		switch f {
		case fieldSPort:
			k.sport, same = rekeyPort(from.Ports, a.cfg.Ports, k.sport)
		case fieldDPort:
			k.dport, same = rekeyPort(from.Ports, a.cfg.Ports, k.dport)
		case fieldSrcNet:
			k.srcNet, same = rekeyNetwork(from.Networks, a.cfg.Networks, k.srcNet)
		case fieldDstNet:
			k.dstNet, same = rekeyNetwork(from.Networks, a.cfg.Networks, k.dstNet)
		default:
			same = true
		}
		ok = ok && same
	}
	return k, ok
}

// rekeyNetwork returns the id in to of the network whose id is id in from,
// and whether to has a network of that name; "other" stays "other".
func rekeyNetwork(from, to *Networks, id uint16) (uint16, bool) {
	if id == 0 {
		return 0, true
	}
	nid := to.id(from.name(id))
	return nid, nid != 0
}

// rekeyPort returns the key value in to of the port key value v of from,
// and whether it reads the same there.
func rekeyPort(from, to *Ports, v uint32) (uint32, bool) {
	switch {
	case v == portNone || v == portOther:
		return v, true
	case v < portNone:
		// A port read as its number: still so if to lists it alone or
		// lists no ports.
		nv := to.value(ProtoTCP, uint16(v))
		return nv, nv == v
	}
	if from == nil || to == nil || int(v-portRange) >= len(from.entries) {
		return v, false
	}
	i := slices.Index(to.entries, from.entries[v-portRange])
	return portRange + uint32(i), i >= 0
}

// id returns the id of the network named name, 0 when there is none.
func (n *Networks) id(name string) uint16 {
	if n == nil {
		return 0
	}
	i, found := slices.BinarySearch(n.names, name)
	if !found {
		return 0
	}
	return uint16(i + 1)
}
