package collector

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// Source gives snapshots of the metric tree.
type Source interface {
	Snapshot(ctx context.Context) *tree.Snapshot
}

// Prometheus is a prometheus.Collector that serves one fresh snapshot of a
// Source per scrape. It is an unchecked collector: the metric families
// depend on what the kernel holds.
type Prometheus struct {
	src Source

	mu    sync.Mutex
	descs map[*tree.Desc]*promDesc
}

// promDesc is the Prometheus description of one tree.Desc, built once.
type promDesc struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}

// NewPrometheus returns a collector serving snapshots of src.
func NewPrometheus(src Source) *Prometheus {
	return &Prometheus{src: src, descs: make(map[*tree.Desc]*promDesc)}
}

// Describe sends nothing: the collector is unchecked.
func (p *Prometheus) Describe(chan<- *prometheus.Desc) {}

// Collect takes one snapshot and sends every sample of it.
func (p *Prometheus) Collect(ch chan<- prometheus.Metric) {
	snap := p.src.Snapshot(context.Background())
	for _, m := range p.metrics(snap) {
		ch <- m
	}
}

// metrics converts a snapshot into Prometheus metrics. A sample that does not
// fit its description becomes an invalid metric, which the registry reports
// without dropping the rest of the scrape.
func (p *Prometheus) metrics(snap *tree.Snapshot) []prometheus.Metric {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]prometheus.Metric, 0, len(snap.Samples))
	for i := range snap.Samples {
		s := &snap.Samples[i]
		d := p.desc(s.Desc)
		var (
			m   prometheus.Metric
			err error
		)
		if s.Desc.Kind == tree.Histogram {
			if s.Histogram == nil {
				continue
			}
			m, err = prometheus.NewConstHistogram(d.desc, s.Histogram.Count, s.Histogram.Sum, s.Histogram.Buckets, s.LabelValues...)
		} else {
			m, err = prometheus.NewConstMetric(d.desc, d.kind, s.Value, s.LabelValues...)
		}
		if err != nil {
			m = prometheus.NewInvalidMetric(d.desc, err)
		}
		out = append(out, m)
	}
	return out
}

func (p *Prometheus) desc(td *tree.Desc) *promDesc {
	if d, ok := p.descs[td]; ok {
		return d
	}
	d := &promDesc{desc: prometheus.NewDesc(td.Name, td.Help, td.Labels, nil), kind: prometheus.UntypedValue}
	switch td.Kind {
	case tree.Counter:
		d.kind = prometheus.CounterValue
	case tree.Gauge:
		d.kind = prometheus.GaugeValue
	}
	p.descs[td] = d
	return d
}
