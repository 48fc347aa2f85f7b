package graphite

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const metricPrefix = "netfilter_exporter_graphite_"

// register registers the metrics of w on r. They read the Writer's own
// counters when scraped, so Stats and the metrics always agree. If one
// registration fails, those already made are undone.
func (w *Writer) register(r prometheus.Registerer) error {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricPrefix + name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricPrefix + name, Help: help}, f)
	}
	limitPoints, limitBytes := float64(w.cfg.BacklogPoints), float64(w.cfg.BacklogBytes)
	cs := []prometheus.Collector{
		counter("points_sent_total", "Lines written to carbon successfully.",
			func() float64 { return float64(w.bl.stats().sent) }),
		counter("points_dropped_total", "Lines dropped because the Graphite backlog was full.",
			func() float64 { return float64(w.bl.stats().dropped) }),
		gauge("backlog_points", "Lines waiting to be sent to carbon, including the batch being written.",
			func() float64 { return float64(w.bl.stats().points) }),
		gauge("backlog_bytes", "Bytes of the lines waiting to be sent to carbon.",
			func() float64 { return float64(w.bl.stats().bytes) }),
		gauge("backlog_limit_points", "Most lines the Graphite backlog keeps; 0 means no limit.",
			func() float64 { return limitPoints }),
		gauge("backlog_limit_bytes", "Most bytes of lines the Graphite backlog keeps; 0 means no limit.",
			func() float64 { return limitBytes }),
		gauge("connected", "Whether a connection to carbon is open (1) or not (0).",
			func() float64 {
				if w.connected.Load() {
					return 1
				}
				return 0
			}),
		counter("connect_errors_total", "Failed attempts to connect to carbon.",
			func() float64 { return float64(w.connectErrors.Load()) }),
		counter("write_errors_total", "Writes to carbon that failed, or were not tried because carbon had closed the connection.",
			func() float64 { return float64(w.writeErrors.Load()) }),
		gauge("last_send_timestamp_seconds", "Unix time of the last successful write to carbon; 0 if none.",
			func() float64 { return float64(w.lastSend.Load()) / 1e9 }),
	}
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("%w: %w", errRegister, err)
		}
	}
	return nil
}
