package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/graphite"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// Settings are the exporter's settings once checked: the flags merged with
// the configuration file, where flags given on the command line win. main
// builds the exporter from them and nothing else.
type Settings struct {
	Web        Web
	NetNS      string
	Collectors Collectors
	Conntrack  Conntrack
	Nfacct     Nfacct
	Nftables   collector.NftablesConfig
	Nflog      Nflog
	// Graphite is the Graphite feed's configuration; its Address is empty
	// when the feed is off.
	Graphite graphite.Config
	// Warnings are the problems of the flags that do not stop the
	// exporter, e.g. a deprecated flag given; the exporter logs them at
	// start.
	Warnings []string
}

// Web are the web server's settings.
type Web struct {
	// Toolkit holds exporter-toolkit's flags: listen addresses, systemd
	// socket, web config file.
	Toolkit       *web.FlagConfig
	TelemetryPath string
	MaxRequests   int
	WriteTimeout  time.Duration
	ScrapeTimeout time.Duration
	// EnableLifecycle serves POST /-/reload (--web.enable-lifecycle).
	EnableLifecycle bool
}

// collectors returns which collectors run: each as its flag says, and with
// --collector.disable-defaults only those whose flag was given (and true).
func (f *Flags) collectors() Collectors {
	on := func(v, set bool) bool { return v && (set || !f.DisableDefaults) }
	return Collectors{
		Nfacct:         on(f.Nfacct, f.nfacctSet),
		Nftables:       on(f.Nftables, f.nftablesSet),
		Conntrack:      on(f.Conntrack, f.conntrackSet),
		ConntrackStats: on(f.ConntrackStats, f.ctStatsSet),
	}
}

// Collectors say which collectors run and how long they may take.
type Collectors struct {
	Nfacct, Nftables, Conntrack, ConntrackStats bool
	// Nflog is on when --nflog.group names a group.
	Nflog bool
	// Timeout bounds one snapshot; NetlinkTimeout one netlink request.
	Timeout, NetlinkTimeout time.Duration
}

// Conntrack are the conntrack collector's settings.
type Conntrack struct {
	// Flow configures the aggregation; Flow.Live is on unless
	// --conntrack.poll-interval=0.
	Flow flow.Config
	// PollInterval is the time between dumps; 0 adapts it to the table.
	PollInterval     time.Duration
	DumpReadSize     int
	ReceiveBuffer    int
	ReceiveBufferMax int
	NoENOBUFS        bool
	Reliable         bool
	Method           ctnl.Method
	EnableAccounting bool
	// EventFilter is the program the event listener attaches, compiled
	// from the file's filters; nil without filters or with
	// --conntrack.filter-place=userspace.
	EventFilter *ctnl.EventFilter
}

// Nfacct are the nfacct collector's settings.
type Nfacct struct {
	collector.NfacctConfig
	OverQuotaEvents bool
}

// Nflog are the nflog collector's settings.
type Nflog struct {
	collector.NflogConfig
	// Groups are the nflog groups to bind; the collector is off without,
	// unless ConntrackInvalid is set (which binds group 0 as well).
	Groups           []uint16
	ReceiveBuffer    int
	ReceiveBufferMax int
}

// Bounds of durations and sizes: values outside them are mistakes.
const (
	maxTimeout      = time.Hour
	maxPollInterval = 24 * time.Hour
	maxSeriesTTL    = 365 * 24 * time.Hour
	maxMaxSeries    = 10_000_000
	maxRequests     = 10_000
	maxBuffer       = 1 << 30
	minGraphiteIntv = 100 * time.Millisecond
	maxGraphiteIntv = 24 * time.Hour
)

// Settings checks every flag and the configuration file and returns the
// merged settings, or an error naming the first flag or field that is
// wrong. toolkit holds exporter-toolkit's flags. It opens the --netns file
// to check that it is a network namespace, and closes it.
func (f *Flags) Settings(toolkit *web.FlagConfig) (*Settings, error) {
	s := &Settings{NetNS: f.NetNS}
	var err error
	if s.Web, err = f.web(toolkit); err != nil {
		return nil, err
	}
	if f.NetNS != "" {
		h, err := netns.Open(f.NetNS)
		if err != nil {
			return nil, fmt.Errorf("--netns: %w", err)
		}
		h.Close()
	}
	s.Collectors = f.collectors()
	if s.Collectors.Timeout, err = duration("--collector.timeout", f.CollectorTimeout, time.Millisecond, maxTimeout); err != nil {
		return nil, err
	}
	if s.Collectors.NetlinkTimeout, err = duration("--collector.netlink-timeout", f.NetlinkTimeout, time.Millisecond, maxTimeout); err != nil {
		return nil, err
	}
	file := &File{}
	if f.ConfigFile != "" {
		if file, err = Load(f.ConfigFile); err != nil {
			return nil, fmt.Errorf("--config.file: %w", err)
		}
	}
	if s.Conntrack, err = f.conntrack(file); err != nil {
		return nil, err
	}
	s.Nfacct = Nfacct{NfacctConfig: collector.NfacctConfig{Separator: f.NfacctSeparator}, OverQuotaEvents: f.NfacctOverQuota}
	if f.NfacctNameLabels != "" {
		s.Nfacct.NameLabels = strings.Split(f.NfacctNameLabels, ",")
	}
	if f.NfacctSeparator == "" {
		return nil, fmt.Errorf("--nfacct.name-separator: %w: must not be empty", errFlag)
	}
	if err := s.Nfacct.Validate(); err != nil {
		return nil, fmt.Errorf("--nfacct.name-labels: %w", err)
	}
	limit, err := integer("--nftables.rule-counters-limit", f.NftRuleCountersLimit, 1, maxMaxSeries)
	if err != nil {
		return nil, err
	}
	s.Nftables = collector.NftablesConfig{RuleCounters: f.NftRuleCounters, RuleCountersLimit: limit}
	if err := s.Nftables.Validate(); err != nil {
		return nil, err
	}
	if s.Nflog, err = f.nflog(); err != nil {
		return nil, err
	}
	s.Nflog.Networks = file.Networks
	s.Collectors.Nflog = len(s.Nflog.Groups) > 0 || s.Nflog.ConntrackInvalid
	if s.Graphite, err = f.graphite(); err != nil {
		return nil, err
	}
	if f.escapeSet {
		s.Warnings = append(s.Warnings, "--graphite.escape-char is deprecated and ignored: Graphite paths keep what carbon stores and write each other byte as %XX, so that no two series share a path (README, Graphite paths)")
	}
	return s, nil
}

// nflog checks the nflog flags, whether a group is given or not.
func (f *Flags) nflog() (Nflog, error) {
	n := Nflog{NflogConfig: collector.NflogConfig{ConntrackInvalid: f.NflogConntrackInvalid}}
	for _, g := range f.NflogGroups {
		v, err := integer("--nflog.group", g, 0, 65535)
		if err != nil {
			return n, err
		}
		if slices.Contains(n.Groups, uint16(v)) {
			return n, fmt.Errorf("--nflog.group: %w %q: given twice", errFlag, g)
		}
		n.Groups = append(n.Groups, uint16(v))
	}
	var err error
	if n.GroupBy, err = collector.ParseNflogGroupBy(f.NflogGroupBy); err != nil {
		return n, fmt.Errorf("--nflog.group-by: %w", err)
	}
	if n.MaxSeries, err = integer("--nflog.max-series", f.NflogMaxSeries, 1, maxMaxSeries); err != nil {
		return n, err
	}
	if n.ReceiveBuffer, err = size("--nflog.receive-buffer", f.NflogReceiveBuffer); err != nil {
		return n, err
	}
	if n.ReceiveBufferMax, err = size("--nflog.receive-buffer-max", f.NflogReceiveBufferMax); err != nil {
		return n, err
	}
	if n.ReceiveBufferMax < n.ReceiveBuffer {
		return n, fmt.Errorf("--nflog.receive-buffer-max: %w %s: below --nflog.receive-buffer %s", errFlag, f.NflogReceiveBufferMax, f.NflogReceiveBuffer)
	}
	return n, nil
}

// web checks the web server's flags.
func (f *Flags) web(toolkit *web.FlagConfig) (Web, error) {
	w := Web{Toolkit: toolkit, TelemetryPath: f.TelemetryPath, WriteTimeout: f.WriteTimeout, ScrapeTimeout: f.ScrapeTimeout, EnableLifecycle: f.EnableLifecycle}
	if !strings.HasPrefix(f.TelemetryPath, "/") || strings.HasPrefix(f.TelemetryPath, "/-/") {
		return w, fmt.Errorf("--web.telemetry-path: %w %s: must start with / and not with /-/ (the health endpoints)", errFlag, quote(f.TelemetryPath))
	}
	var err error
	if w.MaxRequests, err = integer("--web.max-requests", f.MaxRequests, 0, maxRequests); err != nil {
		return w, err
	}
	if w.WriteTimeout, err = duration("--web.write-timeout", f.WriteTimeout, time.Millisecond, maxTimeout); err != nil {
		return w, err
	}
	if w.ScrapeTimeout, err = duration("--web.scrape-timeout", f.ScrapeTimeout, time.Millisecond, maxTimeout); err != nil {
		return w, err
	}
	if toolkit == nil {
		return w, nil
	}
	if toolkit.WebSystemdSocket == nil || !*toolkit.WebSystemdSocket {
		if toolkit.WebListenAddresses == nil || len(*toolkit.WebListenAddresses) == 0 {
			return w, fmt.Errorf("--web.listen-address: %w: at least one address is needed", errFlag)
		}
		for _, a := range *toolkit.WebListenAddresses {
			if err := listenAddress(a); err != nil {
				return w, fmt.Errorf("--web.listen-address: %w %s: %w", errFlag, quote(a), err)
			}
		}
	}
	if toolkit.WebConfigFile != nil && *toolkit.WebConfigFile != "" {
		// exporter-toolkit reads the file, and the files it names, with
		// os.ReadFile: they are checked first, as the exporter's own.
		if err := checkWebConfig(*toolkit.WebConfigFile); err != nil {
			return w, fmt.Errorf("--web.config.file: %w", err)
		}
		if err := web.Validate(*toolkit.WebConfigFile); err != nil {
			return w, fmt.Errorf("--web.config.file: %w", err)
		}
	}
	return w, nil
}

// listenAddress checks an address the web server can listen on: host:port
// (the host may be empty), or vsock://CID:PORT.
func listenAddress(a string) error {
	if rest, ok := strings.CutPrefix(a, "vsock://"); ok {
		cid, port, err := net.SplitHostPort(rest)
		if err != nil {
			return err
		}
		if _, err := strconv.ParseUint(cid, 10, 32); err != nil {
			return fmt.Errorf("CID %s is not a number", quote(cid))
		}
		return checkPort(port, 0)
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	return checkPort(port, 0)
}

// checkPort checks a port number of at least lo.
func checkPort(port string, lo int) error {
	p, err := strconv.Atoi(port)
	if err != nil || p < lo || p > 65535 {
		return fmt.Errorf("port %s must be a number from %d to 65535", quote(port), lo)
	}
	return nil
}

// conntrack checks the conntrack flags and merges them with the file.
func (f *Flags) conntrack(file *File) (Conntrack, error) {
	c := Conntrack{
		NoENOBUFS: f.NoENOBUFS, Reliable: f.Reliable, EnableAccounting: f.EnableAccounting,
	}
	switch m := ctnl.Method(f.ReceiveMethod); m {
	case ctnl.MethodAuto, ctnl.MethodIOURing, ctnl.MethodRecvmmsg:
		c.Method = m
	default:
		return c, fmt.Errorf("--conntrack.receive-method: %w %s: want auto, io_uring or recvmmsg", errFlag, quote(f.ReceiveMethod))
	}
	c.Flow.Networks, c.Flow.Ports, c.Flow.Filter = file.Networks, file.Ports, file.Filter
	switch {
	case f.groupBySet:
		keys, err := flow.ParseGroupBy(f.GroupBy)
		if err != nil {
			return c, fmt.Errorf("--conntrack.group-by: %w", err)
		}
		c.Flow.GroupBy = keys
	case len(file.Conntrack.GroupBy) > 0:
		c.Flow.GroupBy = file.Conntrack.GroupBy
	default:
		c.Flow.GroupBy, _ = flow.ParseGroupBy(flow.DefaultGroupBy)
	}
	switch {
	case f.maxSeriesSet:
		n, err := integer("--conntrack.max-series", f.MaxSeries, 1, maxMaxSeries)
		if err != nil {
			return c, err
		}
		c.Flow.MaxSeries = n
	case file.Conntrack.MaxSeries > 0:
		c.Flow.MaxSeries = file.Conntrack.MaxSeries
	default:
		c.Flow.MaxSeries = DefaultMaxSeries
	}
	var err error
	if c.Flow.SeriesTTL, err = duration("--conntrack.series-ttl", f.SeriesTTL, 0, maxSeriesTTL); err != nil {
		return c, err
	}
	c.Flow.Live = true
	if f.PollInterval != "auto" {
		d, perr := time.ParseDuration(f.PollInterval)
		if perr != nil {
			return c, fmt.Errorf("--conntrack.poll-interval: %w %s: want auto, 0 or a duration such as 30s", errFlag, quote(f.PollInterval))
		}
		if d != 0 {
			if d, err = duration("--conntrack.poll-interval", d, 10*time.Millisecond, maxPollInterval); err != nil {
				return c, err
			}
		}
		c.PollInterval, c.Flow.Live = d, d > 0
	}
	if c.DumpReadSize, err = integer("--conntrack.dump-read-size", f.DumpReadSize, 0, maxBuffer); err != nil {
		return c, err
	}
	if c.ReceiveBuffer, err = size("--conntrack.receive-buffer", f.ReceiveBuffer); err != nil {
		return c, err
	}
	if c.ReceiveBufferMax, err = size("--conntrack.receive-buffer-max", f.ReceiveBufferMax); err != nil {
		return c, err
	}
	if c.ReceiveBufferMax < c.ReceiveBuffer {
		return c, fmt.Errorf("--conntrack.receive-buffer-max: %w %s: below --conntrack.receive-buffer %s", errFlag, f.ReceiveBufferMax, f.ReceiveBuffer)
	}
	if f.TopCount < 0 || f.TopCount > 10_000 {
		return c, fmt.Errorf("--conntrack.top.count: %w %d: want 0 (off) to 10000", errFlag, f.TopCount)
	}
	if f.TopCount > 0 {
		by, err := flow.ParseGroupBy(f.TopBy)
		if err != nil {
			return c, fmt.Errorf("--conntrack.top.by: %w", err)
		}
		window, err := duration("--conntrack.top.window", f.TopWindow, 6*time.Second, maxPollInterval)
		if err != nil {
			return c, err
		}
		capacity, err := integer("--conntrack.top.capacity", strconv.Itoa(f.TopCapacity), 1, 1<<20)
		if err != nil {
			return c, err
		}
		c.Flow.Top = flow.TopConfig{Count: f.TopCount, By: by, Window: window, Capacity: capacity, IPv4Bits: f.TopIPv4Prefix, IPv6Bits: f.TopIPv6Prefix}
	}
	if f.FilterPlace != "userspace" {
		if c.EventFilter, err = c.Flow.Filter.EventFilter(); err != nil {
			return c, fmt.Errorf("--config.file: filters: %w", err)
		}
		c.Flow.EventFilter = c.EventFilter
	}
	if err := c.Flow.Validate(); err != nil {
		return c, fmt.Errorf("conntrack settings: %w", err)
	}
	return c, nil
}

// graphite checks the Graphite flags, whether the feed is on or not, so that
// a mistake shows at once.
func (f *Flags) graphite() (graphite.Config, error) {
	points, bytes, err := graphite.ParseBacklogSize(f.GraphiteBacklog)
	if err != nil {
		return graphite.Config{}, fmt.Errorf("--graphite.backlog-size: %w", err)
	}
	mode, err := graphite.ParseMode(f.GraphiteMode)
	if err != nil {
		return graphite.Config{}, fmt.Errorf("--graphite.mode: %w", err)
	}
	interval, err := duration("--graphite.interval", f.GraphiteInterval, minGraphiteIntv, maxGraphiteIntv)
	if err != nil {
		return graphite.Config{}, err
	}
	timeout, err := duration("--graphite.timeout", f.GraphiteTimeout, time.Millisecond, maxTimeout)
	if err != nil {
		return graphite.Config{}, err
	}
	window, err := duration("--graphite.resend-window", f.GraphiteWindow, 0, maxGraphiteIntv)
	if err != nil {
		return graphite.Config{}, err
	}
	windowSize, err := graphite.ParseWindowSize(f.GraphiteWindowSize)
	if err != nil {
		return graphite.Config{}, fmt.Errorf("--graphite.resend-window-size: %w", err)
	}
	c := graphite.Config{
		Address:           f.GraphiteAddress,
		Prefix:            f.GraphitePrefix,
		Interval:          interval,
		Timeout:           timeout,
		BacklogPoints:     points,
		BacklogBytes:      bytes,
		ResendWindow:      window,
		ResendWindowBytes: windowSize,
		Mode:              mode,
		Tagged:            f.GraphiteTagged,
	}
	if c.Address != "" {
		if err := c.Validate(); err != nil {
			return c, fmt.Errorf("--graphite.address: %w", err)
		}
	}
	return c, nil
}

// duration checks that d is within [lo, hi].
func duration(flag string, d, lo, hi time.Duration) (time.Duration, error) {
	if d < lo || d > hi {
		return d, fmt.Errorf("%s: %w %v: must be from %v to %v", flag, errFlag, d, lo, hi)
	}
	return d, nil
}

// integer parses a decimal integer within [lo, hi], naming the value as
// given when it is not one.
func integer(flag, s string, lo, hi int) (int, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < int64(lo) || n > int64(hi) {
		return 0, fmt.Errorf("%s: %w %s: must be a whole number from %d to %d", flag, errFlag, quote(s), lo, hi)
	}
	return int(n), nil
}

// size parses a size in bytes such as 64MiB, from 1 byte to 1 GiB (the
// kernel doubles a socket buffer size and keeps it in an int).
func size(flag, s string) (int, error) {
	n, err := units.ParseBase2Bytes(s)
	if err != nil || n <= 0 || n > maxBuffer {
		return 0, fmt.Errorf("%s: %w %s: must be a size from 1B to 1GiB, e.g. 64MiB", flag, errFlag, quote(s))
	}
	return int(n), nil
}

// FilterSummary says in one line where the file's filters judge flows, or
// returns "" when there are none: a start logs it and --config.check
// prints it.
func (c *Conntrack) FilterSummary() string {
	accept, deny := c.Flow.Filter.Rules()
	if accept+deny == 0 {
		return ""
	}
	kernel := "off (--conntrack.filter-place=userspace)"
	if c.EventFilter != nil {
		kernel = c.EventFilter.Summary()
	}
	return fmt.Sprintf("conntrack filters: %d accept and %d deny rules; in the kernel, on DESTROY events: %s; in userspace: every event and dumped entry the kernel keeps (events refused in the kernel are counted nowhere)", accept, deny, kernel)
}
