package collector

import (
	"slices"

	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// TopSource reads the top talkers; *flow.Pipeline is one.
type TopSource interface {
	Top() flow.TopReading
}

// topFamilies are the metric families of the top talkers.
type topFamilies struct {
	src                       TopSource
	bytes, packets, bytesErr  *tree.Desc
	tracked, capacity, window *tree.Desc
}

// newTopFamilies returns the families of src's talkers, or nil when they
// are off.
func newTopFamilies(src TopSource) *topFamilies {
	r := src.Top()
	if !r.On {
		return nil
	}
	const ns = namespace + "_conntrack_top_"
	labels := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		labels[i] = string(k)
	}
	dir := append(slices.Clone(labels), "direction")
	return &topFamilies{
		src: src,
		bytes: tree.NewDesc(ns+"bytes",
			"Bytes the top conntrack talkers moved in the window, per direction, ranked by orig plus reply bytes; the truth is within [value, value + netfilter_conntrack_top_bytes_error].", tree.Gauge, dir...),
		packets: tree.NewDesc(ns+"packets",
			"Packets the top conntrack talkers moved in the window, per direction.", tree.Gauge, dir...),
		bytesErr: tree.NewDesc(ns+"bytes_error",
			"The most a top talker's bytes may be under the truth: 0 while the window's distinct keys fit the capacity.", tree.Gauge, labels...),
		tracked: tree.NewDesc(ns+"keys_tracked",
			"Distinct keys the top talkers' window holds (each of its steps holds up to the capacity).", tree.Gauge),
		capacity: tree.NewDesc(ns+"capacity",
			"Keys each step of the top talkers' window holds.", tree.Gauge),
		window: tree.NewDesc(ns+"window_seconds",
			"What the top talkers' values cover: the last this many seconds.", tree.Gauge),
	}
}

// add adds the talkers' samples to b.
func (f *topFamilies) add(b *tree.Builder) {
	r := f.src.Top()
	for _, t := range r.Talkers {
		head := append([]string{"conntrack", "top"}, t.Values...)
		path := func(leaf ...string) []string { return append(slices.Clip(head), leaf...) }
		lv := func(dir string) []string { return append(slices.Clone(t.Values), dir) }
		b.Add(f.bytes, float64(t.OrigBytes), path("orig", "bytes"), lv("orig")...)
		b.Add(f.bytes, float64(t.ReplyBytes), path("reply", "bytes"), lv("reply")...)
		b.Add(f.packets, float64(t.OrigPackets), path("orig", "pkts"), lv("orig")...)
		b.Add(f.packets, float64(t.ReplyPackets), path("reply", "pkts"), lv("reply")...)
		b.Add(f.bytesErr, float64(t.BytesError), path("bytes_error"), t.Values...)
	}
	self := func(leaf string) []string { return []string{"exporter", "conntrack", leaf} }
	b.Add(f.tracked, float64(r.Tracked), self("top_keys_tracked"))
	b.Add(f.capacity, float64(r.Capacity), self("top_capacity"))
	b.Add(f.window, r.Window.Seconds(), self("top_window_seconds"))
}
