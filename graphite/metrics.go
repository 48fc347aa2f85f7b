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
	windowBytes, windowSeconds := float64(w.q.windowBytes), w.q.windowAge.Seconds()
	stat := func(f func(queueStats) float64) func() float64 {
		return func() float64 { return f(w.q.stats()) }
	}
	cs := []prometheus.Collector{
		counter("points_sent_total", "Points carbon's kernel acknowledged receiving (SIOCOUTQ), each counted once.",
			stat(func(s queueStats) float64 { return float64(s.sent) })),
		counter("points_resent_total", "Points sent again from the resend window after a connection to carbon failed, counted once acknowledged.",
			stat(func(s queueStats) float64 { return float64(s.resent) })),
		counter("points_dropped_total", "Points dropped because the Graphite backlog was full.",
			stat(func(s queueStats) float64 { return float64(s.dropped) })),
		gauge("backlog_points", "Points carbon's kernel has not acknowledged yet, resends aside, including those being written.",
			stat(func(s queueStats) float64 { return float64(s.backlogLines) })),
		gauge("backlog_bytes", "Bytes of the points carbon's kernel has not acknowledged yet, resends aside.",
			stat(func(s queueStats) float64 { return float64(s.backlogBytes) })),
		gauge("backlog_limit_points", "Most points the Graphite backlog keeps; 0 means no limit.",
			func() float64 { return limitPoints }),
		gauge("backlog_limit_bytes", "Most bytes of points the Graphite backlog keeps; 0 means no limit.",
			func() float64 { return limitBytes }),
		gauge("resend_window_points", "Points kept to be sent again after a failed connection, including those queued for resending.",
			stat(func(s queueStats) float64 { return float64(s.windowLines) })),
		gauge("resend_window_bytes", "Bytes of the points kept to be sent again after a failed connection.",
			stat(func(s queueStats) float64 { return float64(s.windowBytes) })),
		gauge("resend_window_limit_bytes", "Most bytes of points kept to be sent again after a failed connection; 0 means resends are off.",
			func() float64 { return windowBytes }),
		gauge("resend_window_limit_seconds", "How long points are kept to be sent again after a failed connection; 0 means resends are off.",
			func() float64 { return windowSeconds }),
		gauge("path_collisions", "Points the latest push left out because an earlier point of it had the same Graphite path (two series on one path; the first is sent).",
			func() float64 { return float64(w.form.collisions.Load()) }),
		gauge("connected", "Whether a connection to carbon is open (1) or not (0).",
			func() float64 {
				if w.connected.Load() {
					return 1
				}
				return 0
			}),
		counter("connect_errors_total", "Failed attempts to connect to carbon.",
			func() float64 { return float64(w.connectErrors.Load()) }),
		counter("write_errors_total", "Connections to carbon lost: writes that failed, and connections carbon closed.",
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
