// Command netfilter_exporter exports Linux netfilter accounting to
// Prometheus and, optionally, to Graphite: nfacct counters and quotas,
// conntrack flows counted while they run and when they end, and conntrack
// table statistics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/alecthomas/units"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/config"
	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/graphite"
	"github.com/netfilter-exporter/netfilter_exporter/internal/health"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
	"github.com/netfilter-exporter/netfilter_exporter/nftables"
	exposition "github.com/netfilter-exporter/netfilter_exporter/prometheus"
)

const (
	exporterName     = "netfilter_exporter"
	defaultMaxSeries = 4096
)

// options holds every command-line setting.
type options struct {
	web           *web.FlagConfig
	telemetryPath string
	maxRequests   int
	writeTimeout  time.Duration
	scrapeTimeout time.Duration
	log           promslog.Config

	netnsPath        string
	collectorTimeout time.Duration

	configFile  string
	configCheck bool

	conntrackEnabled      bool
	conntrackStatsEnabled bool
	ctGroupBy             string
	ctMaxSeries           int
	ctSeriesTTL           time.Duration
	ctEnableAccounting    bool
	ctReceiveBuffer       string
	ctReceiveBufferMax    string
	ctNoENOBUFS           bool
	ctReliable            bool
	ctReceiveMethod       string
	ctPollInterval        string
	ctDumpReadSize        int

	nfacctEnabled   bool
	nfacctLabels    string
	nfacctSeparator string
	nfacctOverQuota bool
	netlinkTimeout  time.Duration

	nftablesEnabled   bool
	nftRuleCounters   bool
	nftRuleCountLimit int

	graphiteAddress  string
	graphiteInterval time.Duration
	graphitePrefix   string
	graphiteTimeout  time.Duration
	graphiteBacklog  string
	graphiteEscape   string
	graphiteMode     string
	graphiteTagged   bool
}

// newApp declares the command line.
func newApp(o *options) *kingpin.Application {
	app := kingpin.New(exporterName, "Exports Linux netfilter accounting to Prometheus and, optionally, Graphite: nfacct counters and quotas, conntrack flows counted while they run (table dumps) and when they end (DESTROY events), summed by the keys you choose, and conntrack table statistics.")
	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')
	o.web = kingpinflag.AddFlags(app, ":9862")
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&o.telemetryPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests; 0 disables the limit. When every slot is taken, a client that has stopped reading for 1s is cut off to make room.").Default("40").IntVar(&o.maxRequests)
	app.Flag("web.write-timeout", "Longest time a client may take to read each 64 KiB of a /metrics response before it is cut off; the deadline is renewed after every chunk, so a slow client that keeps reading gets the whole body.").Default(exposition.DefaultWriteTimeout.String()).DurationVar(&o.writeTimeout)
	app.Flag("web.scrape-timeout", "Longest time one /metrics request may take, from its arrival to its last byte.").Default(exposition.DefaultScrapeTimeout.String()).DurationVar(&o.scrapeTimeout)
	promslogflag.AddFlags(app, &o.log)

	app.Flag("netns", "Network namespace file to watch instead of the exporter's own, e.g. /var/run/netns/fw.").PlaceHolder("PATH").StringVar(&o.netnsPath)
	app.Flag("collector.timeout", "Longest time one snapshot of all collectors may take.").Default("10s").DurationVar(&o.collectorTimeout)
	app.Flag("collector.netlink-timeout", "Deadline of one netlink request (nfacct dump, nftables dump, conntrack statistics).").Default("5s").DurationVar(&o.netlinkTimeout)
	app.Flag("collector.nfacct", "Enable the nfacct collector (nfnetlink_acct objects).").Default("true").BoolVar(&o.nfacctEnabled)
	app.Flag("collector.nftables", "Enable the nftables collector (nf_tables named counters and quotas of every table).").Default("true").BoolVar(&o.nftablesEnabled)
	app.Flag("collector.conntrack", "Enable the conntrack collector (flows summed from DESTROY events).").Default("true").BoolVar(&o.conntrackEnabled)
	app.Flag("collector.conntrack_stats", "Enable the conntrack table statistics collector.").Default("true").BoolVar(&o.conntrackStatsEnabled)

	app.Flag("config.file", "YAML file with named networks, port lists and filters for conntrack accounting.").PlaceHolder("FILE").StringVar(&o.configFile)
	app.Flag("config.check", "Check --config.file and the flags, then exit.").BoolVar(&o.configCheck)

	app.Flag("conntrack.group-by", "Comma-separated keys that conntrack flows are summed by, in Graphite hierarchy order: family, proto, sport, dport, src, dst, src_net, dst_net, zone, mark, nat. Default: "+flow.DefaultGroupBy+", or conntrack.group_by in --config.file.").PlaceHolder(flow.DefaultGroupBy).StringVar(&o.ctGroupBy)
	app.Flag("conntrack.max-series", "Most conntrack flow series; past it new key combinations are summed into one series whose keys read other. Default: "+strconv.Itoa(defaultMaxSeries)+", or conntrack.max_series in --config.file.").PlaceHolder(strconv.Itoa(defaultMaxSeries)).IntVar(&o.ctMaxSeries)
	app.Flag("conntrack.series-ttl", "Remove a conntrack flow series not updated for this long; 0 keeps series forever.").Default("0s").DurationVar(&o.ctSeriesTTL)
	app.Flag("conntrack.enable-accounting", "Set nf_conntrack_acct, nf_conntrack_timestamp and nf_conntrack_events to 1 in the watched namespace at start (they apply to flows created afterwards).").BoolVar(&o.ctEnableAccounting)
	app.Flag("conntrack.receive-buffer", "Receive buffer of the conntrack event socket (SO_RCVBUFFORCE), e.g. 64MiB.").Default("64MiB").StringVar(&o.ctReceiveBuffer)
	app.Flag("conntrack.receive-buffer-max", "Largest size the receive buffer is doubled up to, each time the kernel drops events; equal to --conntrack.receive-buffer to never grow it.").Default("1GiB").StringVar(&o.ctReceiveBufferMax)
	app.Flag("conntrack.no-enobufs", "Set NETLINK_NO_ENOBUFS on the event socket: when the buffer is full the kernel drops only the events that do not fit, instead of every event until the exporter has emptied the buffer. Losses are counted either way.").Default("true").BoolVar(&o.ctNoENOBUFS)
	app.Flag("conntrack.receive-method", "How conntrack events are received: auto (io_uring where the kernel and seccomp allow it, else recvmmsg), io_uring (a multishot receive into a ring of buffers, Linux 6.1+) or recvmmsg.").Default("auto").EnumVar(&o.ctReceiveMethod, "auto", "io_uring", "recvmmsg")
	app.Flag("conntrack.poll-interval", "Live accounting: how often the conntrack table is dumped, so that flows are counted while they run and flows that never send a DESTROY event are counted too. auto adapts it to the table, from 5s up to 10m, so that dumps use at most 4% of one CPU; 0 turns live accounting off (flows are then counted only when they end).").Default("auto").StringVar(&o.ctPollInterval)
	app.Flag("conntrack.dump-read-size", "Read size of conntrack table dumps; small values slow dumps down (for tests).").Hidden().Default("0").IntVar(&o.ctDumpReadSize)
	app.Flag("conntrack.reliable", "Reliable event delivery (NETLINK_BROADCAST_ERROR): the kernel keeps an ended flow until its DESTROY event is delivered. Lossless, but the table holds those entries meanwhile.").BoolVar(&o.ctReliable)

	app.Flag("nfacct.name-labels", "Comma-separated label names that the parts of a dotted nfacct object name are split into, e.g. family,service turns ipv4.http into family=\"ipv4\",service=\"http\". Off when empty.").Default("").StringVar(&o.nfacctLabels)
	app.Flag("nfacct.name-separator", "Separator between the parts of nfacct object names for --nfacct.name-labels.").Default(".").StringVar(&o.nfacctSeparator)
	app.Flag("nfacct.over-quota-events", "Listen for the kernel's over-quota notifications and count them.").Default("true").BoolVar(&o.nfacctOverQuota)

	app.Flag("nftables.rule-counters", "Also export the anonymous counters of nf_tables rules that carry a comment, summed by family, table, chain and comment.").BoolVar(&o.nftRuleCounters)
	app.Flag("nftables.rule-counters-limit", "Most rule counter series exported with --nftables.rule-counters; the others are left out and counted.").Default(strconv.Itoa(collector.DefaultRuleCountersLimit)).IntVar(&o.nftRuleCountLimit)

	app.Flag("graphite.address", "host:port of a carbon plaintext listener to push to; empty disables the Graphite feed.").Default("").StringVar(&o.graphiteAddress)
	app.Flag("graphite.interval", "How often a snapshot is pushed to Graphite.").Default("60s").DurationVar(&o.graphiteInterval)
	app.Flag("graphite.prefix", "Prefix of every Graphite path.").Default("netfilter").StringVar(&o.graphitePrefix)
	app.Flag("graphite.timeout", "Dial and write deadline of the Graphite connection.").Default("10s").DurationVar(&o.graphiteTimeout)
	app.Flag("graphite.backlog-size", "Points kept while carbon is unreachable: a number of points (100000) or a size in bytes (64MiB). The oldest are dropped first.").Default("100000").StringVar(&o.graphiteBacklog)
	app.Flag("graphite.escape-char", "Character that replaces each character Graphite cannot take in a path element.").Default("_").StringVar(&o.graphiteEscape)
	app.Flag("graphite.mode", "cumulative: counters as the kernel holds them; delta: the increase since the previous push (what ulogd2 sends, without zeroing the kernel).").Default("cumulative").StringVar(&o.graphiteMode)
	app.Flag("graphite.tagged", "Send Graphite 1.1 tagged series (netfilter.nfacct_bytes_total;object=web) instead of dotted paths; labels become tags, the nfacct name label the tag object (Graphite reserves name); carbon needs ENABLE_TAGS.").BoolVar(&o.graphiteTagged)
	return app
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(args []string, stderr io.Writer) int {
	var o options
	app := newApp(&o)
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	o.log.Writer = stderr
	logger := promslog.New(&o.log)

	if o.configCheck {
		if _, err := conntrackSettings(&o); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
			return 1
		}
		if _, err := nftablesSettings(&o); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
			return 1
		}
		fmt.Fprintf(stderr, "%s: configuration OK\n", exporterName)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, &o, logger); err != nil {
		logger.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// serve builds the collectors and readers and runs them until ctx is done.
func serve(ctx context.Context, o *options, logger *slog.Logger) error {
	logger.Info("starting "+exporterName, "version", version.Info(), "build_context", version.BuildContext())

	reg := prometheus.NewRegistry()
	gcfg, err := graphiteConfig(o, reg)
	if err != nil {
		return err
	}
	ct, err := conntrackSettings(o)
	if err != nil {
		return err
	}
	nfacctCfg, err := nfacctSettings(o)
	if err != nil {
		return err
	}
	nftCfg, err := nftablesSettings(o)
	if err != nil {
		return err
	}

	ns, err := netns.Open(o.netnsPath)
	if err != nil {
		return fmt.Errorf("--netns: %w", err)
	}
	defer ns.Close()

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()

	collectorsByName := make(map[string]collector.Collector)
	// A collector that cannot start (module missing, EPERM) is served as
	// failing; the exporter and the other collectors go on.
	add := func(name string, c collector.Collector, err error) {
		if err != nil {
			logger.Error("collector cannot start; it will report success 0", "collector", name, "err", err)
			c = collector.Failing(fmt.Errorf("%s: %w", name, err))
		}
		collectorsByName[name] = c
	}
	if o.nfacctEnabled {
		c, err := newNfacct(ctx, nfacctCfg, o, ns, logger, &wg)
		add("nfacct", c, err)
	}
	if o.nftablesEnabled {
		var c collector.Collector
		conn, err := nftables.Dial(&nftables.Config{NetNS: ns.FD(), Timeout: o.netlinkTimeout})
		if err == nil {
			context.AfterFunc(ctx, func() { conn.Close() })
			c, err = collector.NewNftables(conn, nftCfg)
		}
		add("nftables", c, err)
	}
	if o.conntrackEnabled {
		c, err := newConntrack(ctx, ct, ns, o.netlinkTimeout, logger, &wg)
		add("conntrack", c, err)
	}
	if o.conntrackStatsEnabled {
		var c collector.Collector
		client, err := ctnl.Dial(ns, o.netlinkTimeout)
		if err == nil {
			context.AfterFunc(ctx, func() { client.Close() })
			c = collector.NewConntrackStats(client)
		}
		add("conntrack_stats", c, err)
	}
	set := collector.NewSet(collectorsByName, o.collectorTimeout, logger)
	logger.Info("collectors enabled", "collectors", strings.Join(set.Names(), ","), "netns", ns.Path())
	// One snapshot at start, so that /-/ready does not wait for a scrape.
	go set.Snapshot(ctx)

	reg.MustRegister(
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	if gcfg.Address != "" {
		w, err := graphite.New(gcfg, set, logger)
		if err != nil {
			return fmt.Errorf("graphite: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil {
				logger.Error("graphite writer stopped", "err", err)
			}
		}()
	}

	return serveHTTP(ctx, o, set, reg, set, logger)
}

// nfacctSettings checks the nfacct flags.
func nfacctSettings(o *options) (collector.NfacctConfig, error) {
	cfg := collector.NfacctConfig{Separator: o.nfacctSeparator}
	if o.nfacctLabels != "" {
		cfg.NameLabels = strings.Split(o.nfacctLabels, ",")
	}
	return cfg, cfg.Validate()
}

// nftablesSettings checks the nftables flags.
func nftablesSettings(o *options) (collector.NftablesConfig, error) {
	cfg := collector.NftablesConfig{RuleCounters: o.nftRuleCounters, RuleCountersLimit: o.nftRuleCountLimit}
	return cfg, cfg.Validate()
}

// newNfacct opens the nfacct client and, if asked, the over-quota listener.
// An error means the kernel could not be reached.
func newNfacct(ctx context.Context, cfg collector.NfacctConfig, o *options, ns *netns.Handle, logger *slog.Logger, wg *sync.WaitGroup) (collector.Collector, error) {
	ncfg := &nfacct.Config{NetNS: ns.FD(), Timeout: o.netlinkTimeout}
	conn, err := nfacct.Dial(ncfg)
	if err != nil {
		return nil, err
	}
	c, err := collector.NewNfacct(conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	if !o.nfacctOverQuota {
		return c, nil
	}
	l, err := nfacct.ListenOverQuota(ncfg)
	if err != nil {
		// Counting notifications is a bonus: the counters still work.
		logger.Warn("not counting nfacct over-quota notifications", "err", err)
		return c, nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer l.Close()
		c.WatchOverQuota(ctx, l, logger)
	}()
	return c, nil
}

// conntrackSetup is what the conntrack collector is built from, checked.
type conntrackSetup struct {
	flow             flow.Config
	receiveBuffer    int
	receiveBufferMax int
	noENOBUFS        bool
	reliable         bool
	method           ctnl.Method
	enableAcct       bool
	// live is on unless --conntrack.poll-interval=0; pollInterval is 0
	// when it adapts to the table.
	live         bool
	pollInterval time.Duration
	dumpReadSize int
}

// conntrackSettings reads the config file and merges it with the flags;
// flags given on the command line win.
func conntrackSettings(o *options) (*conntrackSetup, error) {
	cfg := &config.Config{}
	if o.configFile != "" {
		var err error
		if cfg, err = config.Load(o.configFile); err != nil {
			return nil, err
		}
	}
	s := &conntrackSetup{reliable: o.ctReliable, enableAcct: o.ctEnableAccounting, noENOBUFS: o.ctNoENOBUFS, method: ctnl.Method(o.ctReceiveMethod)}
	s.flow.Networks, s.flow.Ports, s.flow.Filter = cfg.Networks, cfg.Ports, cfg.Filter
	switch {
	case o.ctGroupBy != "":
		keys, err := flow.ParseGroupBy(o.ctGroupBy)
		if err != nil {
			return nil, fmt.Errorf("--conntrack.group-by: %w", err)
		}
		s.flow.GroupBy = keys
	case len(cfg.Conntrack.GroupBy) > 0:
		s.flow.GroupBy = cfg.Conntrack.GroupBy
	default:
		s.flow.GroupBy, _ = flow.ParseGroupBy(flow.DefaultGroupBy)
	}
	switch {
	case o.ctMaxSeries < 0:
		return nil, fmt.Errorf("--conntrack.max-series must be positive, got %d", o.ctMaxSeries)
	case o.ctMaxSeries > 0:
		s.flow.MaxSeries = o.ctMaxSeries
	case cfg.Conntrack.MaxSeries > 0:
		s.flow.MaxSeries = cfg.Conntrack.MaxSeries
	default:
		s.flow.MaxSeries = defaultMaxSeries
	}
	if o.ctSeriesTTL < 0 {
		return nil, fmt.Errorf("--conntrack.series-ttl must not be negative, got %v", o.ctSeriesTTL)
	}
	s.flow.SeriesTTL = o.ctSeriesTTL
	if o.ctPollInterval != "auto" {
		d, err := time.ParseDuration(o.ctPollInterval)
		if err != nil || d < 0 || (d > 0 && d < 10*time.Millisecond) {
			return nil, fmt.Errorf("--conntrack.poll-interval: %q is not auto, 0 or a duration of at least 10ms", o.ctPollInterval)
		}
		s.pollInterval = d
		s.live = d > 0
	} else {
		s.live = true
	}
	s.flow.Live = s.live
	s.dumpReadSize = o.ctDumpReadSize
	for _, b := range []struct {
		flag, value string
		dst         *int
	}{
		{"--conntrack.receive-buffer", o.ctReceiveBuffer, &s.receiveBuffer},
		{"--conntrack.receive-buffer-max", o.ctReceiveBufferMax, &s.receiveBufferMax},
	} {
		// The kernel doubles the value it is given and keeps an int.
		size, err := units.ParseBase2Bytes(b.value)
		if err != nil || size <= 0 || size > 1<<30 {
			return nil, fmt.Errorf("%s: %q is not a size between 1B and 1GiB", b.flag, b.value)
		}
		*b.dst = int(size)
	}
	// The aggregator checks the combination.
	if _, err := flow.NewAggregator(s.flow); err != nil {
		return nil, fmt.Errorf("conntrack settings: %w", err)
	}
	return s, nil
}

// newConntrack checks the kernel settings accounting needs and starts the
// DESTROY listener.
func newConntrack(ctx context.Context, s *conntrackSetup, ns *netns.Handle, netlinkTimeout time.Duration, logger *slog.Logger, wg *sync.WaitGroup) (collector.Collector, error) {
	for _, sysctl := range []struct{ name, without string }{
		{ctnl.SysctlAcct, "packet and byte counters will read 0"},
		{ctnl.SysctlTimestamp, "flow durations will not be measured"},
	} {
		dotted := strings.ReplaceAll(sysctl.name, "/", ".")
		if s.enableAcct {
			if err := ctnl.WriteSysctl(ns, sysctl.name, true); err != nil {
				logger.Error("--conntrack.enable-accounting could not switch on a conntrack setting: "+sysctl.without, "sysctl", dotted, "err", err)
			} else {
				logger.Info("switched on for flows created from now on", "sysctl", dotted)
			}
			continue
		}
		on, err := ctnl.ReadSysctl(ns, sysctl.name)
		switch {
		case err != nil:
			logger.Warn("cannot check conntrack setting", "sysctl", dotted, "err", err)
		case !on:
			logger.Warn("conntrack setting is off: "+sysctl.without+"; set it to 1 or pass --conntrack.enable-accounting", "sysctl", dotted)
		}
	}
	checkEventsSysctl(ns, s, logger)
	agg, err := flow.NewAggregator(s.flow)
	if err != nil {
		return nil, err
	}
	l, err := ctnl.Listen(ctnl.ListenConfig{
		NetNS:         ns,
		ReadBuffer:    s.receiveBuffer,
		MaxReadBuffer: s.receiveBufferMax,
		NoENOBUFS:     s.noENOBUFS,
		Reliable:      s.reliable,
		Method:        s.method,
	})
	if err != nil {
		return nil, err
	}
	if m, why := l.Method(); why != nil {
		logger.Info("conntrack events are received with "+string(m), "io_uring", why)
	} else {
		logger.Info("conntrack events are received with " + string(m))
	}
	c := collector.NewConntrack(l, agg)
	if s.live {
		d, err := ctnl.NewDumper(ctnl.DumpConfig{NetNS: ns, Timeout: netlinkTimeout, ReadSize: s.dumpReadSize})
		if err != nil {
			l.Close()
			return nil, err
		}
		c.Live(d, collector.LiveConfig{Interval: s.pollInterval, Filter: collector.DumpFilterFor(s.flow.Filter)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.Close()
			c.Poll(ctx, logger.With("collector", "conntrack"))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer l.Close()
		c.Run(ctx, logger.With("collector", "conntrack"))
	}()
	return c, nil
}

// checkEventsSysctl makes sure, or warns, that every flow sends a DESTROY
// event: with nf_conntrack_events=2 (the kernel's default) a flow created
// while no conntrack listener existed never does.
func checkEventsSysctl(ns *netns.Handle, s *conntrackSetup, logger *slog.Logger) {
	dotted := strings.ReplaceAll(ctnl.SysctlEvents, "/", ".")
	v, err := ctnl.ReadSysctlInt(ns, ctnl.SysctlEvents)
	switch {
	case err != nil:
		logger.Warn("cannot check conntrack setting", "sysctl", dotted, "err", err)
	case v == 1:
	case s.enableAcct:
		if err := ctnl.WriteSysctlInt(ns, ctnl.SysctlEvents, 1); err != nil {
			logger.Error("--conntrack.enable-accounting could not make every flow send events", "sysctl", dotted, "err", err)
		} else {
			logger.Info("switched on for flows created from now on", "sysctl", dotted)
		}
	case s.live:
		logger.Warn("flows created while no conntrack listener existed send no DESTROY event; live accounting counts them from table dumps, up to the last dump that saw them. Set it to 1 or pass --conntrack.enable-accounting", "sysctl", dotted, "value", v)
	default:
		logger.Warn("flows created while no conntrack listener existed (while the exporter was down) send no DESTROY event and are never counted with --conntrack.poll-interval=0. Set it to 1 or pass --conntrack.enable-accounting", "sysctl", dotted, "value", v)
	}
}

// graphiteConfig validates the Graphite flags, whether the feed is on or
// not, so that a mistake shows at once.
func graphiteConfig(o *options, reg prometheus.Registerer) (graphite.Config, error) {
	points, bytes, err := graphite.ParseBacklogSize(o.graphiteBacklog)
	if err != nil {
		return graphite.Config{}, fmt.Errorf("--graphite.backlog-size: %w", err)
	}
	if len(o.graphiteEscape) != 1 {
		return graphite.Config{}, fmt.Errorf("--graphite.escape-char must be a single character, got %q", o.graphiteEscape)
	}
	mode, err := graphite.ParseMode(o.graphiteMode)
	if err != nil {
		return graphite.Config{}, fmt.Errorf("--graphite.mode: %w", err)
	}
	return graphite.Config{
		Address:       o.graphiteAddress,
		Prefix:        o.graphitePrefix,
		Interval:      o.graphiteInterval,
		Timeout:       o.graphiteTimeout,
		BacklogPoints: points,
		BacklogBytes:  bytes,
		EscapeChar:    o.graphiteEscape[0],
		Mode:          mode,
		Tagged:        o.graphiteTagged,
		Registerer:    reg,
	}, nil
}

// serveHTTP serves /metrics (snapshots of src, after the families of reg),
// /-/healthy, /-/ready and the landing page until ctx is done.
func serveHTTP(ctx context.Context, o *options, src exposition.Source, reg *prometheus.Registry, ready health.Readiness, logger *slog.Logger) error {
	if o.writeTimeout <= 0 || o.scrapeTimeout <= 0 {
		return fmt.Errorf("--web.write-timeout and --web.scrape-timeout must be positive, got %v and %v", o.writeTimeout, o.scrapeTimeout)
	}
	mux := http.NewServeMux()
	mux.Handle(o.telemetryPath, promhttp.InstrumentMetricHandler(reg, exposition.NewHandler(src, exposition.HandlerOpts{
		Gatherer:      reg,
		Registerer:    reg,
		MaxRequests:   o.maxRequests,
		WriteTimeout:  o.writeTimeout,
		ScrapeTimeout: o.scrapeTimeout,
		Logger:        logger,
	})))
	health.Register(mux, "Netfilter Exporter", ready)
	if o.telemetryPath != "/" && o.telemetryPath != "" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "Netfilter Exporter",
			Description: "Prometheus exporter for Linux netfilter accounting: nfacct counters and conntrack flows",
			Version:     version.Info(),
			Links:       append([]web.LandingLinks{{Address: o.telemetryPath, Text: "Metrics"}}, health.LandingLinks()...),
			Profiling:   "false", // no pprof handlers are served
		})
		if err != nil {
			return fmt.Errorf("building the landing page: %w", err)
		}
		mux.Handle("/", landing)
	}
	// No WriteTimeout: it would bound a whole response, however large and
	// however steadily read. The metrics handler sets a deadline per chunk
	// instead, and one per scrape.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, o.web, logger) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			// Clients that stopped reading hold their responses until
			// their write deadline: do not wait for them.
			logger.Warn("closing the connections of scrapes still under way", "err", err)
			_ = srv.Close()
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		logger.Info("stopped")
		return nil
	}
}
