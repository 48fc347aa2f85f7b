package tree

import (
	"fmt"
	"time"
)

// Kind is the type of a metric family.
type Kind uint8

// The kinds of metric a Sample can hold.
const (
	// Counter is a monotonically increasing value.
	Counter Kind = iota
	// Gauge is a value that can go up and down.
	Gauge
	// Histogram is a distribution of observations in cumulative buckets.
	Histogram
)

// String returns the Prometheus name of the kind.
func (k Kind) String() string {
	switch k {
	case Counter:
		return "counter"
	case Gauge:
		return "gauge"
	case Histogram:
		return "histogram"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Desc describes one metric family: its Prometheus name, help text, kind and
// label names. A Desc is created once by a collector and shared by all the
// samples of that family.
type Desc struct {
	Name   string
	Help   string
	Kind   Kind
	Labels []string
}

// NewDesc returns a Desc for the metric family name.
func NewDesc(name, help string, kind Kind, labels ...string) *Desc {
	return &Desc{Name: name, Help: help, Kind: kind, Labels: labels}
}

// HistogramValue is the state of a histogram: cumulative counts per upper
// bound, plus the total count and sum of all observations.
type HistogramValue struct {
	Count uint64
	Sum   float64
	// Buckets maps an upper bound to the cumulative count of observations
	// less than or equal to it.
	Buckets map[float64]uint64
}

// Sample is one value of the metric tree.
type Sample struct {
	// Desc is the metric family the sample belongs to.
	Desc *Desc
	// LabelValues holds one value per label name of Desc, in the same order.
	LabelValues []string
	// Path is the position of the sample in the Graphite hierarchy, below the
	// prefix, one element per level. Elements are raw values; the Graphite
	// writer escapes them. A nil Path keeps the sample out of Graphite.
	Path []string
	// Value is the value of a counter or gauge.
	Value float64
	// Histogram is the value of a histogram; nil for other kinds.
	Histogram *HistogramValue
}

// Snapshot is one reading of the whole metric tree.
type Snapshot struct {
	// Time is when the reading was taken.
	Time time.Time
	// Samples holds every sample of the reading, grouped by collector.
	Samples []Sample
}

// Builder collects the samples of one collector during one reading. It is not
// safe for concurrent use; every collector gets its own.
type Builder struct {
	samples []Sample
}

// Add appends a counter or gauge sample. path may be nil to keep the sample
// out of Graphite.
func (b *Builder) Add(d *Desc, value float64, path []string, labelValues ...string) {
	b.samples = append(b.samples, Sample{Desc: d, LabelValues: labelValues, Path: path, Value: value})
}

// AddHistogram appends a histogram sample. Histograms have no Graphite path.
func (b *Builder) AddHistogram(d *Desc, h HistogramValue, labelValues ...string) {
	b.samples = append(b.samples, Sample{Desc: d, LabelValues: labelValues, Histogram: &h})
}

// Samples returns the samples added so far.
func (b *Builder) Samples() []Sample {
	return b.samples
}

// Reset drops all samples, keeping the allocated memory.
func (b *Builder) Reset() {
	clear(b.samples)
	b.samples = b.samples[:0]
}
