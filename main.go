// Command netfilter_exporter exports Linux netfilter accounting to
// Prometheus and, optionally, to Graphite: nfacct counters and quotas,
// nftables named counters and quotas, conntrack flows counted while they
// run and when they end, and conntrack table statistics.
//
// This file is the command line and the wiring: config checks the settings,
// kernel.go builds what talks to the kernel, the packages do the rest.
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
	"strings"
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

	"github.com/netfilter-exporter/netfilter_exporter/collector"
	"github.com/netfilter-exporter/netfilter_exporter/config"
	"github.com/netfilter-exporter/netfilter_exporter/exposition"
	"github.com/netfilter-exporter/netfilter_exporter/graphite"
	"github.com/netfilter-exporter/netfilter_exporter/internal/health"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/task"
)

const exporterName = "netfilter_exporter"

// commandLine is the parsed command line.
type commandLine struct {
	app     *kingpin.Application
	toolkit *web.FlagConfig
	log     promslog.Config
	flags   *config.Flags
	check   bool
}

// newCommandLine declares every flag: exporter-toolkit's web flags,
// promslog's log flags, the exporter's own (config.AddFlags) and
// --config.check.
func newCommandLine() *commandLine {
	c := &commandLine{}
	c.app = kingpin.New(exporterName, "Exports Linux netfilter accounting to Prometheus and, optionally, Graphite: nfacct counters and quotas, nftables named counters and quotas, conntrack flows counted while they run (table dumps) and when they end (DESTROY events), summed by the keys you choose, and conntrack table statistics.")
	c.app.Version(version.Print(exporterName))
	kingpin.ManPageTemplate = manPageTemplate(kingpin.ManPageTemplate)
	c.app.HelpFlag.Short('h')
	c.toolkit = kingpinflag.AddFlags(c.app, ":9862")
	promslogflag.AddFlags(c.app, &c.log)
	c.flags = config.AddFlags(c.app)
	c.app.Flag("config.check", "Check --config.file and every flag, as a start would, then exit.").BoolVar(&c.check)
	return c
}

// kingpinManHeader is the .TH line of kingpin's --help-man template, which
// puts the whole multi-line --version block where man wants one word.
const kingpinManHeader = `.TH {{.App.Name}} 1 {{.App.Version}} "{{.App.Author}}"`

// kingpinManName is the NAME section of that template, the name alone where
// whatis wants "name \- summary".
const kingpinManName = ".SH \"NAME\"\n{{.App.Name}}\n"

// manPageTemplate returns kingpin's man page template with a .TH line that
// man renders: the name, section 1, the build date (the day of
// SOURCE_DATE_EPOCH, so that the page is reproducible too), the one-line
// version and the manual's name; and a NAME section with a summary.
func manPageTemplate(tmpl string) string {
	date := ""
	if t, err := time.Parse("20060102-15:04:05", version.BuildDate); err == nil {
		date = t.Format("2006-01-02")
	}
	v := exporterName
	if version.Version != "" {
		v += " " + version.Version
	}
	tmpl = strings.Replace(tmpl, kingpinManHeader, fmt.Sprintf(`.TH %s 1 "%s" "%s" "User Commands"`, exporterName, date, v), 1)
	return strings.Replace(tmpl, kingpinManName, ".SH \"NAME\"\n{{.App.Name}} \\- Prometheus exporter of Linux netfilter accounting\n", 1)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is the whole program; it returns the exit code: 2 for a command line
// that does not parse, 1 for settings that are wrong or a failure.
func run(args []string, stderr io.Writer) int {
	cl := newCommandLine()
	if _, err := cl.app.Parse(args); err != nil {
		// promslog's flags do not say which flag their errors are about.
		switch msg := err.Error(); {
		case strings.Contains(msg, "log level"):
			err = fmt.Errorf("--log.level: %w", err)
		case strings.Contains(msg, "log format"):
			err = fmt.Errorf("--log.format: %w", err)
		}
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	settings, err := cl.flags.Settings(cl.toolkit)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 1
	}
	if cl.check {
		if sum := settings.Conntrack.FilterSummary(); sum != "" && settings.Collectors.Conntrack {
			fmt.Fprintf(stderr, "%s: %s\n", exporterName, sum)
		}
		fmt.Fprintf(stderr, "%s: configuration OK\n", exporterName)
		return 0
	}
	cl.log.Writer = stderr
	logger := promslog.New(&cl.log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the configuration file; caught from here on, so that
	// one sent during the start waits for the reloader instead of killing
	// the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := serve(ctx, cl.flags, settings, hup, logger); err != nil {
		logger.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// serve builds the exporter from s, which f gave, and runs it until ctx is
// done, reloading the configuration file on every signal of hup and POST
// /-/reload.
func serve(ctx context.Context, f *config.Flags, s *config.Settings, hup <-chan os.Signal, logger *slog.Logger) error {
	logger.Info("starting "+exporterName, "version", version.Info(), "build_context", version.BuildContext())
	for _, w := range s.Warnings {
		logger.Warn(w)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	ns, err := netns.Follow(s.NetNS)
	if err != nil {
		return fmt.Errorf("--netns: %w", err)
	}
	defer ns.Close()

	// Every background task runs in tasks and stops with it, before the
	// namespace is closed.
	tasks := task.NewGroup(ctx, logger)
	defer tasks.Stop()
	k, err := newKernel(s, logger)
	if err != nil {
		return err
	}
	h, _, err := ns.Current()
	if err != nil {
		return fmt.Errorf("--netns: %w", err)
	}
	set := collector.NewSet(k.open(tasks.Context(), h), s.Collectors.Timeout, logger)
	k.set = set
	// On every return, the tasks stop before the kernel closes: the
	// namespace follower, one of them, closes and opens k itself, and the
	// first snapshot reads its clients. (A separate defer k.close() would
	// run before the deferred tasks.Stop above.)
	defer func() {
		tasks.Stop()
		k.close()
	}()
	watched := ns.Path()
	if watched == "" {
		watched = "the exporter's own"
	}
	logger.Info("collectors enabled", "collectors", strings.Join(set.Names(), ","), "netns", watched)
	if ns.Path() != "" {
		tasks.Go("network namespace follower", k.follow(ns))
	}
	// One snapshot at start, so that /-/ready does not wait for a scrape.
	tasks.Go("first snapshot", func(ctx context.Context) error { set.Snapshot(ctx); return nil })

	reloader, err := config.NewReloader(f, s, k.reload, reg, logger)
	if err != nil {
		return fmt.Errorf("registering the reload metrics: %w", err)
	}
	tasks.Go("SIGHUP reloader", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				// Reload logs its outcome.
				_ = reloader.Reload()
			}
		}
	})

	if s.Graphite.Address != "" {
		gcfg := s.Graphite
		gcfg.Registerer = reg
		w, err := graphite.New(gcfg, set, logger)
		if err != nil {
			return fmt.Errorf("graphite: %w", err)
		}
		tasks.Go("graphite writer", w.Run)
	}
	err = serveHTTP(ctx, s.Web, set, topPage{k.ct}, reg, set, reloader.Reload, logger)
	// The tasks stop (the Graphite writer pushes its last snapshot) while
	// the collectors still work; then the collectors close.
	tasks.Stop()
	return err
}

// serveHTTP serves /metrics (snapshots of src, after the families of reg),
// /-/healthy, /-/ready, /-/reload (calling reload) and the landing page
// until ctx is done.
func serveHTTP(ctx context.Context, w config.Web, src exposition.Source, top exposition.TopSource, reg *prometheus.Registry, ready health.Readiness, reload func() error, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle(w.TelemetryPath, promhttp.InstrumentMetricHandler(reg, exposition.NewHandler(src, exposition.HandlerOpts{
		Gatherer:      reg,
		Registerer:    reg,
		MaxRequests:   w.MaxRequests,
		WriteTimeout:  w.WriteTimeout,
		ScrapeTimeout: w.ScrapeTimeout,
		Logger:        logger,
	})))
	health.Register(mux, "Netfilter Exporter", ready)
	mux.Handle(health.ReloadPath, health.Reload(w.EnableLifecycle, reload))
	topHandler := exposition.NewTopHandler(top, exposition.TopHandlerOpts{Logger: logger})
	mux.Handle("/top", topHandler)
	mux.Handle("/top.json", topHandler)
	if w.TelemetryPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "Netfilter Exporter",
			Description: "Prometheus exporter for Linux netfilter accounting: nfacct and nftables counters, conntrack flows",
			Version:     version.Info(),
			Links: append(append([]web.LandingLinks{{Address: w.TelemetryPath, Text: "Metrics"}}, health.LandingLinks()...),
				web.LandingLinks{Address: "/top", Text: "Top talkers", Description: "who moves the most bytes now (--conntrack.top.count)"}),
			Profiling: "false", // no pprof handlers are served
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
	go func() { errc <- web.ListenAndServe(srv, w.Toolkit, logger) }()
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
