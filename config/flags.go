package config

import (
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/graphite"
)

// Defaults of the settings that have no flag default of their own.
const (
	DefaultMaxSeries = 4096
	// MaxConfigFileSize is the largest configuration file read.
	MaxConfigFileSize = 1 << 20
	// MaxConfigNodes is the most nodes (maps, lists, keys and values) the
	// configuration file may stand for once every alias is replaced by a
	// copy of its anchor: one for each byte of the largest file read. A
	// file without aliases holds at most half that, as each node takes a
	// character and a separator, so any file fits whose aliases do not
	// more than double it, and reading the largest file allowed takes a
	// bounded time and memory.
	MaxConfigNodes = 1 << 20
)

// Flags are the exporter's own command-line settings as given, before they
// are checked; Settings checks them. The web server's and the log's flags
// (exporter-toolkit and promslog) are declared beside them by the caller.
type Flags struct {
	TelemetryPath string
	MaxRequests   string
	WriteTimeout  time.Duration
	ScrapeTimeout time.Duration
	// EnableLifecycle turns on POST /-/reload.
	EnableLifecycle bool

	NetNS            string
	CollectorTimeout time.Duration
	NetlinkTimeout   time.Duration
	Nfacct           bool
	Nftables         bool
	Conntrack        bool
	ConntrackStats   bool
	// DisableDefaults turns off every collector not enabled by its own
	// flag; the *Set fields say which flags were given.
	DisableDefaults                                  bool
	nfacctSet, nftablesSet, conntrackSet, ctStatsSet bool

	ConfigFile string

	GroupBy          string
	groupBySet       bool
	MaxSeries        string
	maxSeriesSet     bool
	SeriesTTL        time.Duration
	TopCount         int
	TopBy            string
	TopWindow        time.Duration
	TopCapacity      int
	TopIPv4Prefix    int
	TopIPv6Prefix    int
	EnableAccounting bool
	ReceiveBuffer    string
	ReceiveBufferMax string
	NoENOBUFS        bool
	ReceiveMethod    string
	PollInterval     string
	DumpReadSize     string
	Reliable         bool
	FilterPlace      string

	NfacctNameLabels string
	NfacctSeparator  string
	NfacctOverQuota  bool

	NflogGroups           []string
	NflogGroupBy          string
	NflogMaxSeries        string
	NflogReceiveBuffer    string
	NflogReceiveBufferMax string
	NflogConntrackInvalid bool

	NftRuleCounters      bool
	NftRuleCountersLimit string

	GraphiteAddress    string
	GraphiteInterval   time.Duration
	GraphitePrefix     string
	GraphiteTimeout    time.Duration
	GraphiteBacklog    string
	GraphiteWindow     time.Duration
	GraphiteWindowSize string
	// GraphiteEscape is the value of the deprecated --graphite.escape-char,
	// which has no effect; escapeSet tells whether it was given.
	GraphiteEscape string
	escapeSet      bool
	GraphiteMode   string
	GraphiteTagged bool
}

// AddFlags declares the exporter's own flags on app and returns where their
// values go. Every flag is checked by Settings, for --config.check and a
// real start alike.
func AddFlags(app *kingpin.Application) *Flags {
	f := &Flags{}
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&f.TelemetryPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests; 0 disables the limit. When every slot is taken, a client that has stopped reading for 1s is cut off to make room.").Default("40").StringVar(&f.MaxRequests)
	app.Flag("web.write-timeout", "Longest time a client may take to read each 64 KiB of a /metrics response before it is cut off; the deadline is renewed after every chunk, so a slow client that keeps reading gets the whole body.").Default(exposition.DefaultWriteTimeout.String()).DurationVar(&f.WriteTimeout)
	app.Flag("web.enable-lifecycle", "Reload --config.file on POST or PUT /-/reload, as SIGHUP does; without it /-/reload answers 403.").BoolVar(&f.EnableLifecycle)
	app.Flag("web.scrape-timeout", "Longest time one /metrics request may take, from its arrival to its last byte.").Default(exposition.DefaultScrapeTimeout.String()).DurationVar(&f.ScrapeTimeout)

	app.Flag("netns", "Network namespace file to watch instead of the exporter's own, e.g. /var/run/netns/fw. The exporter follows it: when the namespace is deleted its collectors fail, and when one appears again at the path they reopen in it.").PlaceHolder("PATH").StringVar(&f.NetNS)
	app.Flag("collector.timeout", "Longest time one snapshot of all collectors may take.").Default("10s").DurationVar(&f.CollectorTimeout)
	app.Flag("collector.netlink-timeout", "Deadline of one netlink request (nfacct dump, nftables dump, conntrack statistics), and of each read of a conntrack table dump.").Default("5s").DurationVar(&f.NetlinkTimeout)
	app.Flag("collector.disable-defaults", "Run only the collectors enabled by their own flag, e.g. --collector.disable-defaults --collector.nfacct.").BoolVar(&f.DisableDefaults)
	app.Flag("collector.nfacct", "Enable the nfacct collector (nfnetlink_acct objects).").Default("true").IsSetByUser(&f.nfacctSet).BoolVar(&f.Nfacct)
	app.Flag("collector.nftables", "Enable the nftables collector (nf_tables named counters and quotas of every table).").Default("true").IsSetByUser(&f.nftablesSet).BoolVar(&f.Nftables)
	app.Flag("collector.conntrack", "Enable the conntrack collector (flows counted while they run and when they end).").Default("true").IsSetByUser(&f.conntrackSet).BoolVar(&f.Conntrack)
	app.Flag("collector.conntrack_stats", "Enable the conntrack table statistics collector.").Default("true").IsSetByUser(&f.ctStatsSet).BoolVar(&f.ConntrackStats)

	app.Flag("config.file", "YAML file with named networks, port lists and filters for conntrack accounting.").PlaceHolder("FILE").StringVar(&f.ConfigFile)

	app.Flag("conntrack.group-by", "Comma-separated keys that conntrack flows are summed by, in Graphite hierarchy order: family, proto, sport, dport, src, dst, src_net, dst_net, zone, mark, nat. Default: "+flow.DefaultGroupBy+", or conntrack.group_by in --config.file.").PlaceHolder(flow.DefaultGroupBy).IsSetByUser(&f.groupBySet).StringVar(&f.GroupBy)
	app.Flag("conntrack.top.count", "How many top talkers to export and show on /top; 0 (the default) turns them off: addresses are personal data in many places, and each is a new series.").Default("0").IntVar(&f.TopCount)
	app.Flag("conntrack.top.by", "Keys top talkers are told apart by: src, dst or src,dst.").Default("src").StringVar(&f.TopBy)
	app.Flag("conntrack.top.window", "Top talkers' values are what moved in the last window, sliding in six steps.").Default(flow.DefaultTopWindow.String()).DurationVar(&f.TopWindow)
	app.Flag("conntrack.top.capacity", "Keys each step of the top talkers' window holds: exact while a window's distinct keys fit, with their error beyond.").Default(strconv.Itoa(flow.DefaultTopCapacity)).IntVar(&f.TopCapacity)
	app.Flag("conntrack.top.ipv4-prefix", "Prefix IPv4 top talkers are aggregated to.").Default(strconv.Itoa(flow.DefaultTopIPv4Bits)).IntVar(&f.TopIPv4Prefix)
	app.Flag("conntrack.top.ipv6-prefix", "Prefix IPv6 top talkers are aggregated to (a /64 is one host in practice).").Default(strconv.Itoa(flow.DefaultTopIPv6Bits)).IntVar(&f.TopIPv6Prefix)
	app.Flag("conntrack.max-series", "Most conntrack flow series, the overflow series included; past it new key combinations are summed into one series whose keys read other. Default: "+strconv.Itoa(DefaultMaxSeries)+", or conntrack.max_series in --config.file.").PlaceHolder(strconv.Itoa(DefaultMaxSeries)).IsSetByUser(&f.maxSeriesSet).StringVar(&f.MaxSeries)
	app.Flag("conntrack.series-ttl", "Remove a conntrack flow series not updated for this long; 0 keeps series forever.").Default("0s").DurationVar(&f.SeriesTTL)
	app.Flag("conntrack.enable-accounting", "Set nf_conntrack_acct, nf_conntrack_timestamp and nf_conntrack_events to 1 in the watched namespace at start (they apply to flows created afterwards).").BoolVar(&f.EnableAccounting)
	app.Flag("conntrack.receive-buffer", "Receive buffer of the conntrack event socket (SO_RCVBUFFORCE), e.g. 64MiB.").Default("64MiB").StringVar(&f.ReceiveBuffer)
	app.Flag("conntrack.receive-buffer-max", "Largest size the receive buffer is doubled up to, each time the kernel drops events; equal to --conntrack.receive-buffer to never grow it.").Default("1GiB").StringVar(&f.ReceiveBufferMax)
	app.Flag("conntrack.no-enobufs", "Set NETLINK_NO_ENOBUFS on the event socket: when the buffer is full the kernel drops only the events that do not fit, instead of every event until the exporter has emptied the buffer. Losses are counted either way.").Default("true").BoolVar(&f.NoENOBUFS)
	app.Flag("conntrack.receive-method", "How conntrack events are received: auto (io_uring where the kernel and seccomp allow it, else recvmmsg), io_uring (a multishot receive into a ring of buffers, Linux 6.1+) or recvmmsg.").Default("auto").StringVar(&f.ReceiveMethod)
	app.Flag("conntrack.poll-interval", "Live accounting: how often the conntrack table is dumped, so that flows are counted while they run and flows that never send a DESTROY event are counted too. auto adapts it to the table, from "+shortDuration(flow.DefaultMinPollInterval)+" up to "+shortDuration(flow.DefaultMaxPollInterval)+", so that dumps use at most "+strconv.FormatFloat(flow.DefaultPollCPUShare*100, 'g', 3, 64)+"% of one CPU; 0 turns live accounting off (flows are then counted only when they end).").Default("auto").StringVar(&f.PollInterval)
	app.Flag("conntrack.dump-read-size", "Read size of conntrack table dumps; small values slow dumps down (for tests).").Hidden().Default("0").StringVar(&f.DumpReadSize)
	app.Flag("conntrack.filter-place", "Where the config file's filters judge DESTROY events: kernel (a BPF program on the event socket drops what they surely refuse; userspace judges the rest again) or userspace (every event is received and judged).").Default("kernel").EnumVar(&f.FilterPlace, "kernel", "userspace")
	app.Flag("conntrack.reliable", "Reliable event delivery (NETLINK_BROADCAST_ERROR): the kernel keeps an ended flow until its DESTROY event is delivered. Lossless, but the table holds those entries meanwhile.").BoolVar(&f.Reliable)

	app.Flag("nfacct.name-labels", "Comma-separated label names that the parts of a dotted nfacct object name are split into, e.g. family,service turns ipv4.http into family=\"ipv4\",service=\"http\". Off when empty.").Default("").StringVar(&f.NfacctNameLabels)
	app.Flag("nfacct.name-separator", "Separator between the parts of nfacct object names for --nfacct.name-labels.").Default(".").StringVar(&f.NfacctSeparator)
	app.Flag("nfacct.over-quota-events", "Listen for the kernel's over-quota notifications and count them.").Default("true").BoolVar(&f.NfacctOverQuota)

	app.Flag("nflog.group", "Count the packets logged to this nflog group (nft log group N, iptables -j NFLOG --nflog-group N); repeat for several groups. The nflog collector runs when one is given.").PlaceHolder("N").StringsVar(&f.NflogGroups)
	app.Flag("nflog.group-by", "Comma-separated keys that logged packets are summed by after group and prefix, in Graphite hierarchy order: family, proto, sport, dport, src, dst, src_net, dst_net (the --config.file networks), in, out, hook, mark. Empty: by group and prefix only.").Default("").StringVar(&f.NflogGroupBy)
	app.Flag("nflog.max-series", "Most nflog series; past it new key combinations of a group are summed into one series whose prefix and keys read other.").Default(strconv.Itoa(collector.DefaultNflogMaxSeries)).StringVar(&f.NflogMaxSeries)
	app.Flag("nflog.receive-buffer", "Receive buffer of the nflog socket (SO_RCVBUFFORCE), e.g. 64MiB.").Default("64MiB").StringVar(&f.NflogReceiveBuffer)
	app.Flag("nflog.receive-buffer-max", "Largest size the nflog receive buffer is doubled up to, each time logged packets are lost; equal to --nflog.receive-buffer to never grow it.").Default("1GiB").StringVar(&f.NflogReceiveBufferMax)

	app.Flag("nflog.conntrack-invalid", "Count the packets conntrack finds invalid by the reason it logs: binds nflog group 0 and, in the watched namespace, sets the IPv4 and IPv6 loggers to nfnetlink_log and nf_conntrack_log_invalid to 255, restored at exit.").BoolVar(&f.NflogConntrackInvalid)

	app.Flag("nftables.rule-counters", "Also export the anonymous counters of nf_tables rules that carry a comment, summed by family, table, chain and comment.").BoolVar(&f.NftRuleCounters)
	app.Flag("nftables.rule-counters-limit", "Most rule counter series exported with --nftables.rule-counters; the others are left out and counted.").Default(strconv.Itoa(collector.DefaultRuleCountersLimit)).StringVar(&f.NftRuleCountersLimit)

	app.Flag("graphite.address", "host:port of a carbon plaintext listener to push to; empty disables the Graphite feed.").Default("").StringVar(&f.GraphiteAddress)
	app.Flag("graphite.interval", "How often a snapshot is pushed to Graphite.").Default("60s").DurationVar(&f.GraphiteInterval)
	app.Flag("graphite.prefix", "Prefix of every Graphite path.").Default("netfilter").StringVar(&f.GraphitePrefix)
	app.Flag("graphite.timeout", "Dial deadline of the Graphite connection; carbon has stalled when it acknowledges nothing for this long; on SIGTERM, the time allowed for a last snapshot and its delivery.").Default("10s").DurationVar(&f.GraphiteTimeout)
	app.Flag("graphite.backlog-size", "Points kept until carbon acknowledges them: a size in bytes (256MiB) or a number of points (100000). Size it for several snapshots; when it is full the oldest are dropped.").Default(graphite.DefaultBacklogSize).StringVar(&f.GraphiteBacklog)
	app.Flag("graphite.resend-window", "How long points carbon acknowledged are kept, to be sent again after carbon closed or reset the connection (a carbon-cache that dies loses the points it holds in memory); 0 turns resends off, which a carbon-aggregator that sums points needs.").Default(graphite.DefaultResendWindow.String()).DurationVar(&f.GraphiteWindow)
	app.Flag("graphite.resend-window-size", "Most memory the points kept for resending take, compressed (32MiB); the oldest are forgotten first; 0 turns resends off.").Default(graphite.DefaultResendWindowSize).StringVar(&f.GraphiteWindowSize)
	app.Flag("graphite.escape-char", "Deprecated and ignored: Graphite paths now write each byte they cannot hold as %XX.").Hidden().IsSetByUser(&f.escapeSet).StringVar(&f.GraphiteEscape)
	app.Flag("graphite.mode", "cumulative: counters as the kernel holds them; delta: the increase since the previous push (what ulogd2 sends, without zeroing the kernel).").Default("cumulative").StringVar(&f.GraphiteMode)
	app.Flag("graphite.tagged", "Send Graphite 1.1 tagged series (netfilter.nfacct_bytes_total;object=web) instead of dotted paths; labels become tags, the nfacct name label the tag object (Graphite reserves name); carbon needs ENABLE_TAGS.").BoolVar(&f.GraphiteTagged)
	return f
}

// shortDuration writes d as a flag help says it: 10m, not 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
