package collector

import (
	"context"
	"sync/atomic"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// ConntrackSource is conntrack accounting as the conntrack collector reads
// it; *flow.Pipeline is one.
type ConntrackSource interface {
	// Keys returns the keys series are grouped by, in order.
	Keys() []flow.Key
	// Read copies the series into r.
	Read(ctx context.Context, r *flow.Reading) error
	// Stats returns the listener's, the dumps' and live accounting's
	// counts.
	Stats() flow.Stats
}

// Conntrack serves the flow series of conntrack accounting with the counts
// of its event listener and, with live accounting, of its table dumps.
type Conntrack struct {
	src ConntrackSource

	events, lost, drops, overruns, decodeErrors, buffer, upDesc *tree.Desc
	growths, method, filterInfo                                 *tree.Desc

	// filterPlaces are where the filters run, set by FilterPlaces.
	filterPlaces atomic.Pointer[[]string]

	live *liveFamilies
	fams *flowFamilies
	// top are the top talkers' families; nil when off or src has none.
	top *topFamilies
}

// NewConntrack returns the collector of src.
func NewConntrack(src ConntrackSource) *Conntrack {
	c := newConntrack(src)
	if ts, ok := src.(TopSource); ok {
		c.top = newTopFamilies(ts)
	}
	return c
}

func newConntrack(src ConntrackSource) *Conntrack {
	const ns = namespace + "_conntrack_"
	return &Conntrack{
		src: src,
		filterInfo: tree.NewDesc(ns+"filter_info",
			"Where the config file's filters judge conntrack flows: 1 for each place, kernel (a BPF program on the event socket) or userspace.", tree.Gauge, "place"),
		fams: newFlowFamilies(src.Keys()),
		live: newLiveFamilies(),
		events: tree.NewDesc(ns+"destroy_events_total",
			"Conntrack DESTROY events received and decoded (the only conntrack events the exporter listens to).", tree.Counter),
		lost: tree.NewDesc(ns+"events_lost_total",
			"Conntrack DESTROY events lost because the kernel could not queue them for the exporter (the socket's drop counter; 0 in reliable mode, where the kernel sends them again).", tree.Counter),
		drops: tree.NewDesc(ns+"event_delivery_failures_total",
			"Times the kernel could not queue a conntrack event on the exporter's socket, whether or not it sent the event again later.", tree.Counter),
		growths: tree.NewDesc(ns+"receive_buffer_growths_total",
			"Times the event socket's receive buffer was doubled after the kernel dropped events.", tree.Counter),
		overruns: tree.NewDesc(ns+"listener_overruns_total",
			"Times the kernel reported that the event socket overran (ENOBUFS).", tree.Counter),
		decodeErrors: tree.NewDesc(ns+"decode_errors_total",
			"Conntrack messages that could not be decoded and were skipped.", tree.Counter),
		buffer: tree.NewDesc(ns+"receive_buffer_bytes",
			"Receive buffer of the event socket as the kernel reports it (SO_RCVBUF): twice what --conntrack.receive-buffer asks for, as the kernel doubles a request to leave room for its own bookkeeping.", tree.Gauge),
		method: tree.NewDesc(ns+"listener_info",
			"How the conntrack event listener receives events: io_uring (a multishot receive, no system call per event) or recvmmsg.", tree.Gauge, "method"),
		upDesc: tree.NewDesc(ns+"listener_up",
			"Whether the conntrack event listener is receiving (1) or failed and is retrying (0).", tree.Gauge),
	}
}

// Update adds the flow series and the listener's counters to b.
func (c *Conntrack) Update(ctx context.Context, b *tree.Builder) error {
	// The counts are read before the flows: events and dumps are counted
	// after they are aggregated, so events_total never exceeds the flows
	// of the same scrape.
	st := c.src.Stats()
	if err := c.fams.update(ctx, c.src, b); err != nil {
		return err
	}
	up := 0.0
	if st.ListenerUp {
		up = 1
	}
	ls := &st.Listener
	b.Add(c.upDesc, up, []string{"exporter", "conntrack", "listener_up"})
	if c.top != nil {
		c.top.add(b)
	}
	if places := c.filterPlaces.Load(); places != nil {
		for _, p := range *places {
			b.Add(c.filterInfo, 1, nil, p)
		}
	}
	b.Add(c.events, float64(ls.Events), []string{"exporter", "conntrack", "destroy_events"})
	b.Add(c.overruns, float64(ls.Overruns), []string{"exporter", "conntrack", "listener_overruns"})
	if ls.Method != "" {
		b.Add(c.method, 1, nil, string(ls.Method))
	}
	b.Add(c.decodeErrors, float64(ls.DecodeErrors), []string{"exporter", "conntrack", "decode_errors"})
	if st.ListenerErr != nil {
		// Without the kernel's drop counter, losses are unknown: fail
		// rather than report none.
		return st.ListenerErr
	}
	b.Add(c.lost, float64(ls.Lost), []string{"exporter", "conntrack", "events_lost"})
	b.Add(c.drops, float64(ls.Drops), []string{"exporter", "conntrack", "event_delivery_failures"})
	b.Add(c.growths, float64(ls.BufferGrowths), []string{"exporter", "conntrack", "receive_buffer_growths"})
	b.Add(c.buffer, float64(ls.ReadBuffer), []string{"exporter", "conntrack", "receive_buffer_bytes"})
	if st.Live {
		c.live.add(b, &st)
	}
	return nil
}

// ConntrackTableReader reads conntrack table statistics; *ctnl.Conn is one.
type ConntrackTableReader interface {
	TableStats(ctx context.Context) (ctnl.TableStats, error)
}

// ConntrackStats collects the conntrack table's size and per-CPU counters
// over netlink.
type ConntrackStats struct {
	r       ConntrackTableReader
	entries *tree.Desc
	limit   *tree.Desc
	stats   []statDesc
}

type statDesc struct {
	desc *tree.Desc
	leaf string
	get  func(*ctnl.TableStats) uint64
}

// NewConntrackStats returns a collector of conntrack table statistics.
func NewConntrackStats(r ConntrackTableReader) *ConntrackStats {
	const ns = namespace + "_conntrack_"
	c := &ConntrackStats{
		r:       r,
		entries: tree.NewDesc(ns+"entries", "Entries in the conntrack table.", tree.Gauge),
		limit:   tree.NewDesc(ns+"entries_limit", "Size limit of the conntrack table (nf_conntrack_max).", tree.Gauge),
	}
	for _, s := range []struct {
		name, help string
		get        func(*ctnl.TableStats) uint64
	}{
		{"found", "Times NAT found the tuple it tried already in use and picked another; recent kernels (6.18 measured) count nothing else here, so it stays 0 without such clashes.", func(s *ctnl.TableStats) uint64 { return s.Found }},
		{"invalid", "Packets conntrack could not track.", func(s *ctnl.TableStats) uint64 { return s.Invalid }},
		{"insert", "Entries inserted through ctnetlink (conntrack -I, conntrackd); recent kernels (6.18 measured) do not count here the entries that packets create, so it stays 0 on most hosts.", func(s *ctnl.TableStats) uint64 { return s.Insert }},
		{"insert_failed", "Entries that could not be inserted.", func(s *ctnl.TableStats) uint64 { return s.InsertFailed }},
		{"drop", "Packets dropped because inserting their entry failed.", func(s *ctnl.TableStats) uint64 { return s.Drop }},
		{"early_drop", "Entries dropped early to make room when the table was full.", func(s *ctnl.TableStats) uint64 { return s.EarlyDrop }},
		{"error", "Packets with ICMP errors that did not match a connection.", func(s *ctnl.TableStats) uint64 { return s.Error }},
		{"search_restart", "Table lookups restarted because of a hash resize.", func(s *ctnl.TableStats) uint64 { return s.SearchRestart }},
		{"clash_resolve", "Insert clashes resolved.", func(s *ctnl.TableStats) uint64 { return s.ClashResolve }},
		{"chaintoolong", "Entries refused because their hash chain was too long.", func(s *ctnl.TableStats) uint64 { return s.ChainTooLong }},
	} {
		c.stats = append(c.stats, statDesc{
			desc: tree.NewDesc(ns+"stat_"+s.name+"_total", s.help+" Summed over CPUs.", tree.Counter),
			leaf: s.name,
			get:  s.get,
		})
	}
	return c
}

// Update reads the table statistics and adds them to b.
func (c *ConntrackStats) Update(ctx context.Context, b *tree.Builder) error {
	s, err := c.r.TableStats(ctx)
	if err != nil {
		return err
	}
	b.Add(c.entries, float64(s.Entries), []string{"conntrack_stats", "entries"})
	b.Add(c.limit, float64(s.MaxEntries), []string{"conntrack_stats", "entries_limit"})
	for _, sd := range c.stats {
		b.Add(sd.desc, float64(sd.get(&s)), []string{"conntrack_stats", sd.leaf})
	}
	return nil
}

// FilterPlaces says where the config file's filters run ("kernel",
// "userspace"), for netfilter_conntrack_filter_info; none without filters.
// It may be called while Update runs: a reload changes the filters.
func (c *Conntrack) FilterPlaces(places ...string) {
	c.filterPlaces.Store(&places)
}
