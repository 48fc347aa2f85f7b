package config

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netfilter-exporter/netfilter_exporter/flow"
)

// Reload reads --config.file again and checks it as a start does (Load, then
// the same merge with the flags), and returns a copy of running with what a
// reload changes replaced: the networks, ports and filters of conntrack
// accounting (Conntrack.Flow.Networks, Ports and Filter, and
// Conntrack.EventFilter). Everything else stays as running has it: the
// flags are not read again. It fails, naming the file and the field, when
// the file is wrong or changes what only a restart can:
// conntrack.group_by or conntrack.max_series, where no flag overrides them.
func (f *Flags) Reload(running *Settings) (*Settings, error) {
	file := &File{}
	if f.ConfigFile != "" {
		var err error
		if file, err = Load(f.ConfigFile); err != nil {
			return nil, fmt.Errorf("--config.file: %w", err)
		}
	}
	c, err := f.conntrack(file)
	if err != nil {
		return nil, err
	}
	was := &running.Conntrack.Flow
	if !slices.Equal(c.Flow.GroupBy, was.GroupBy) {
		return nil, fmt.Errorf("--config.file: %s: conntrack.group_by %s differs from the running %s and %w", f.ConfigFile, keyText(c.Flow.GroupBy), keyText(was.GroupBy), errRestart)
	}
	if c.Flow.MaxSeries != was.MaxSeries {
		return nil, fmt.Errorf("--config.file: %s: conntrack.max_series %d differs from the running %d and %w", f.ConfigFile, c.Flow.MaxSeries, was.MaxSeries, errRestart)
	}
	s := *running
	s.Conntrack.Flow.Networks, s.Conntrack.Flow.Ports, s.Conntrack.Flow.Filter = c.Flow.Networks, c.Flow.Ports, c.Flow.Filter
	s.Conntrack.Flow.EventFilter, s.Conntrack.EventFilter = c.Flow.EventFilter, c.EventFilter
	return &s, nil
}

// keyText writes group-by keys as the file gives them: [family, proto].
func keyText(keys []flow.Key) string {
	b := []byte{'['}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, k...)
	}
	return string(append(b, ']'))
}

// reloadMetricPrefix begins the names of the Reloader's metric families,
// those of Prometheus with the exporter's namespace.
const reloadMetricPrefix = "netfilter_exporter_config_"

// Reloader applies the configuration file again on SIGHUP and POST
// /-/reload, one reload at a time: Flags.Reload checks it, then the apply
// function given to NewReloader hands it to what runs. A file that is
// wrong, or that apply refuses, leaves the running settings as they are.
// Its metrics say how the last reload went, as Prometheus's do.
type Reloader struct {
	flags  *Flags
	apply  func(*Settings) error
	logger *slog.Logger
	now    func() time.Time

	// mu serializes reloads and guards running.
	mu         sync.Mutex
	running    *Settings
	successful prometheus.Gauge
	timestamp  prometheus.Gauge
}

// NewReloader returns a Reloader of the settings running, which f gave at
// start, and registers its metrics on reg: the start counts as the first
// successful load. apply is called with the settings of each good file,
// and must apply them whole or not at all.
func NewReloader(f *Flags, running *Settings, apply func(*Settings) error, reg prometheus.Registerer, logger *slog.Logger) (*Reloader, error) {
	r := &Reloader{flags: f, running: running, apply: apply, logger: logger, now: time.Now}
	r.successful = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: reloadMetricPrefix + "last_reload_successful",
		Help: "Whether the last configuration reload attempt (SIGHUP, POST /-/reload) was successful; the start counts as one.",
	})
	r.timestamp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: reloadMetricPrefix + "last_reload_success_timestamp_seconds",
		Help: "Timestamp of the last successful configuration reload; the start counts as one.",
	})
	r.successful.Set(1)
	r.timestamp.Set(float64(r.now().UnixNano()) / 1e9)
	if reg != nil {
		if err := reg.Register(r.successful); err != nil {
			return nil, err
		}
		if err := reg.Register(r.timestamp); err != nil {
			reg.Unregister(r.successful)
			return nil, err
		}
	}
	return r, nil
}

// Reload reads and applies the configuration file again, and returns when
// it is applied, or refused with the reason, which it logs with the file's
// name as --config.check prints it.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	file := r.flags.ConfigFile
	s, err := r.flags.Reload(r.running)
	if err == nil {
		err = r.apply(s)
	}
	if err != nil {
		r.successful.Set(0)
		r.logger.Error("configuration not reloaded; the running one stays", "file", file, "err", err)
		return err
	}
	r.running = s
	r.successful.Set(1)
	r.timestamp.Set(float64(r.now().UnixNano()) / 1e9)
	if file == "" {
		r.logger.Info("configuration reloaded: no --config.file, nothing changed", "file", file)
		return nil
	}
	r.logger.Info("configuration reloaded", "file", file)
	return nil
}
