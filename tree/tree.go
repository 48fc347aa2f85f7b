package tree

import (
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
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
	// Leaf, when not nil, ends the Graphite path of every sample of the
	// Desc: a sample's path is its Path followed by Leaf. The samples of
	// one series can then share one Path, built once, and no path is
	// built per sample. Several Descs may describe one family (same name,
	// help, kind and labels) with different leaves, e.g. one per
	// direction; outputs serve them as one family.
	Leaf []string
}

// NewDesc returns a Desc for the metric family name.
func NewDesc(name, help string, kind Kind, labels ...string) *Desc {
	return &Desc{Name: name, Help: help, Kind: kind, Labels: labels}
}

// WithLeaf returns a copy of d whose samples' Graphite paths end with leaf.
func (d *Desc) WithLeaf(leaf ...string) *Desc {
	c := *d
	c.Leaf = leaf
	return &c
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

// Labels holds label values that samples share: typically those of one
// series, in every snapshot for as long as the series lives. Outputs cache
// what they make of them (the Prometheus label text) in it, so a series'
// labels are rendered once, not at every reading. A Labels must not be
// changed once made; it is safe for concurrent use.
type Labels struct {
	values []string
	cache  atomic.Pointer[labelsCache]
}

// labelsCache is what an output made of a Labels for one set of label
// names.
type labelsCache struct {
	names *string
	n     int
	text  []byte
	ok    bool
}

// NewLabels returns a Labels holding values.
func NewLabels(values ...string) *Labels {
	return &Labels{values: values}
}

// Values returns the label values. The slice must not be changed.
func (l *Labels) Values() []string {
	return l.values
}

// Text returns what make made of the values for the label names names,
// calling make only the first time for those names (the same slice, as
// the names of one Desc are). It is how an output renders a series' labels
// once: make must depend on names and values only.
func (l *Labels) Text(names []string, make func(names, values []string) ([]byte, bool)) ([]byte, bool) {
	var id *string
	if len(names) > 0 {
		id = &names[0]
	}
	if c := l.cache.Load(); c != nil && c.names == id && c.n == len(names) {
		return c.text, c.ok
	}
	text, ok := make(names, l.values)
	l.cache.Store(&labelsCache{names: id, n: len(names), text: text, ok: ok})
	return text, ok
}

// Sample is one value of the metric tree.
type Sample struct {
	// Desc is the metric family the sample belongs to.
	Desc *Desc
	// LabelValues holds one value per label name of Desc, in the same order.
	LabelValues []string
	// Labels, when not nil, holds the same values as LabelValues, shared
	// with other samples and snapshots.
	Labels *Labels
	// Path is the position of the sample in the Graphite hierarchy, below the
	// prefix, one element per level. Elements are raw values; the Graphite
	// writer escapes them. A nil Path keeps the sample out of Graphite.
	// When Desc.Leaf is not nil, the position is Path followed by
	// Desc.Leaf: use GraphitePath to read it.
	Path []string
	// Value is the value of a counter or gauge.
	Value float64
	// Histogram is the value of a histogram; nil for other kinds.
	Histogram *HistogramValue
}

// GraphitePath returns the sample's whole Graphite path, Path followed by
// Desc.Leaf; nil when the sample is kept out of Graphite.
func (s *Sample) GraphitePath() []string {
	if s.Path == nil || s.Desc == nil || s.Desc.Leaf == nil {
		return s.Path
	}
	return s.appendGraphitePath(make([]string, 0, len(s.Path)+len(s.Desc.Leaf)))
}

// appendGraphitePath appends the elements of the sample's Graphite path to
// dst and returns the result.
func (s *Sample) appendGraphitePath(dst []string) []string {
	if s.Path == nil {
		return dst
	}
	dst = append(dst, s.Path...)
	if s.Desc != nil {
		dst = append(dst, s.Desc.Leaf...)
	}
	return dst
}

// Snapshot is one reading of the whole metric tree. Read its samples with
// All: Samples holds some, Tables the others.
type Snapshot struct {
	// Time is when the reading was taken.
	Time time.Time
	// Samples holds the samples of the reading that are not in Tables,
	// grouped by collector.
	Samples []Sample
	// Tables hold the samples of large sets of series, compactly; they
	// come after Samples, grouped by collector.
	Tables []*Table
}

// chunkLen is the number of samples in each block a Builder fills. Samples
// are kept in blocks, not in one slice that grows, so that building a large
// tree never copies what it already holds.
const chunkLen = 4096

// chunkPool holds blocks that Release gave back, cleared.
var chunkPool = sync.Pool{New: func() any {
	c := make([]Sample, 0, chunkLen)
	return &c
}}

// Builder collects the samples of one collector during one reading. It is not
// safe for concurrent use; every collector gets its own.
type Builder struct {
	chunks []*[]Sample
	n      int
	tables []*Table
}

// next returns the sample to fill in next.
func (b *Builder) next() *Sample {
	if len(b.chunks) == 0 || len(*b.chunks[len(b.chunks)-1]) == cap(*b.chunks[len(b.chunks)-1]) {
		b.chunks = append(b.chunks, chunkPool.Get().(*[]Sample))
	}
	c := b.chunks[len(b.chunks)-1]
	*c = (*c)[:len(*c)+1]
	b.n++
	return &(*c)[len(*c)-1]
}

// Add appends a counter or gauge sample. path may be nil to keep the sample
// out of Graphite.
func (b *Builder) Add(d *Desc, value float64, path []string, labelValues ...string) {
	s := b.next()
	s.Desc, s.LabelValues, s.Path, s.Value = d, labelValues, path, value
}

// AddShared appends a counter or gauge sample whose labels and Graphite
// path are shared with other samples: l holds its label values, and its
// Graphite path is path followed by d.Leaf (path nil keeps it out of
// Graphite). Nothing is allocated per sample: a collector that keeps l and
// path for the life of a series reads it into the tree for the cost of the
// sample itself.
func (b *Builder) AddShared(d *Desc, value float64, path []string, l *Labels) {
	s := b.next()
	s.Desc, s.Path, s.Value = d, path, value
	if l != nil {
		s.Labels, s.LabelValues = l, l.values
	}
}

// AddHistogram appends a histogram sample. Histograms have no Graphite path.
func (b *Builder) AddHistogram(d *Desc, h HistogramValue, labelValues ...string) {
	s := b.next()
	s.Desc, s.LabelValues, s.Histogram = d, labelValues, &h
}

// Grow makes room for n more samples in one block. A collector that knows
// how many samples it is about to add calls it first: a Builder whose
// samples are all in one block hands it over as it is (Snapshot.Append),
// and a large tree is then not copied into the snapshot.
func (b *Builder) Grow(n int) {
	if n <= 0 {
		return
	}
	if len(b.chunks) > 0 {
		last := *b.chunks[len(b.chunks)-1]
		if cap(last)-len(last) >= n {
			return
		}
		if len(last) == 0 {
			b.chunks = b.chunks[:len(b.chunks)-1]
			b.put(&last)
		}
	}
	// Room for a few more, e.g. the samples a Set adds after the
	// collector's.
	c := make([]Sample, 0, n+growSlack)
	b.chunks = append(b.chunks, &c)
}

// growSlack is the room Grow leaves past what it is asked for.
const growSlack = 256

// detach returns the samples added so far if they are all in one block,
// and empties the Builder; the block is the caller's. It returns nil, and
// changes nothing, when the samples span several blocks.
func (b *Builder) detach() []Sample {
	if len(b.chunks) != 1 {
		return nil
	}
	c := *b.chunks[0]
	b.chunks, b.n = nil, 0
	return c
}

// put gives a block back to the pool if it is of the pooled size.
func (b *Builder) put(c *[]Sample) {
	clear(*c)
	*c = (*c)[:0]
	if cap(*c) == chunkLen {
		chunkPool.Put(c)
	}
}

// AddTable adds the samples of t, after the tables added before. t must
// not be changed afterwards.
func (b *Builder) AddTable(t *Table) {
	b.tables = append(b.tables, t)
}

// Tables returns the tables added so far.
func (b *Builder) Tables() []*Table {
	return b.tables
}

// All returns every sample added so far, as Snapshot.All does: those added
// one by one, then those of the tables.
func (b *Builder) All() iter.Seq[*Sample] {
	snap := Snapshot{Samples: b.Samples(), Tables: b.tables}
	return snap.All()
}

// Len returns the number of samples added so far, not counting those of
// tables.
func (b *Builder) Len() int {
	return b.n
}

// appendTo appends the samples added so far to dst and returns the result.
func (b *Builder) appendTo(dst []Sample) []Sample {
	dst = slices.Grow(dst, b.n)
	for _, c := range b.chunks {
		dst = append(dst, *c...)
	}
	return dst
}

// Samples returns the samples added so far.
func (b *Builder) Samples() []Sample {
	if len(b.chunks) == 1 {
		return *b.chunks[0]
	}
	return b.appendTo(nil)
}

// Reset drops all samples and tables, keeping the first block.
func (b *Builder) Reset() {
	clear(b.tables)
	b.tables = b.tables[:0]
	if len(b.chunks) == 0 {
		return
	}
	for _, c := range b.chunks[1:] {
		b.put(c)
	}
	first := b.chunks[0]
	clear(*first)
	*first = (*first)[:0]
	b.chunks = b.chunks[:1]
	b.n = 0
}

// Release gives the Builder's memory back for other Builders to use; the
// Builder is empty afterwards. Samples returned by Samples must not be used
// after Release; those a Snapshot took with Append may.
func (b *Builder) Release() {
	for _, c := range b.chunks {
		b.put(c)
	}
	b.chunks, b.n, b.tables = nil, 0, nil
}

// Append adds the samples and tables of bs, in order, to the snapshot's,
// and releases every Builder (Release). When the snapshot has no samples
// yet and the first Builder's are all in one block (Grow) with room for
// the others', that block becomes the snapshot's as it is; otherwise the
// samples are copied once into a slice of the final size. Samples is never
// nil afterwards.
func (s *Snapshot) Append(bs ...*Builder) {
	total := len(s.Samples)
	for _, b := range bs {
		total += b.n
	}
	if s.Samples == nil && len(bs) > 0 {
		if base := bs[0].detach(); base != nil && cap(base) >= total {
			s.Samples = base
		} else if base != nil {
			s.Samples = append(make([]Sample, 0, total), base...)
		}
	}
	if s.Samples == nil {
		s.Samples = make([]Sample, 0, total)
	} else {
		s.Samples = slices.Grow(s.Samples, total-len(s.Samples))
	}
	for _, b := range bs {
		s.Samples = b.appendTo(s.Samples)
		s.Tables = append(s.Tables, b.tables...)
		b.Release()
	}
}
