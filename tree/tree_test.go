package tree

import (
	"fmt"
	"slices"
	"testing"
)

var testDesc = NewDesc("netfilter_test_value", "A test value.", Counter, "id")

// TestBuilderKeepsOrderAcrossBlocks adds more samples than a block holds
// and checks that every reader sees them all, in order.
func TestBuilderKeepsOrderAcrossBlocks(t *testing.T) {
	const n = 3*chunkLen + 7
	var b Builder
	for i := range n {
		b.Add(testDesc, float64(i), nil, fmt.Sprint(i))
	}
	if b.Len() != n {
		t.Fatalf("Len %d, want %d", b.Len(), n)
	}
	pre := []Sample{{Value: -1}}
	for name, got := range map[string][]Sample{"Samples": b.Samples(), "appendTo": b.appendTo(pre)[1:]} {
		if len(got) != n {
			t.Fatalf("%s: %d samples, want %d", name, len(got), n)
		}
		for i, s := range got {
			if s.Value != float64(i) || s.LabelValues[0] != fmt.Sprint(i) {
				t.Fatalf("%s: sample %d is %v %q", name, i, s.Value, s.LabelValues)
			}
		}
	}
	b.Reset()
	if b.Len() != 0 || len(b.Samples()) != 0 {
		t.Errorf("after Reset: Len %d, %d samples", b.Len(), len(b.Samples()))
	}
	b.Add(testDesc, 42, nil, "x")
	if s := b.Samples(); len(s) != 1 || s[0].Value != 42 || s[0].Path != nil {
		t.Errorf("after Reset and Add: %+v", s)
	}
	b.Release()
	if b.Len() != 0 {
		t.Errorf("after Release: Len %d", b.Len())
	}
}

func TestSharedSamples(t *testing.T) {
	l := NewLabels("443")
	head := []string{"conntrack", "443"}
	origPkts := testDesc.WithLeaf("orig", "pkts")
	var b Builder
	b.AddShared(origPkts, 1, head, l)
	b.AddShared(testDesc, 2, head, l)
	b.AddShared(origPkts, 3, nil, nil)
	b.Add(testDesc, 4, []string{"plain"}, "x")
	s := b.Samples()
	if !slices.Equal(s[0].LabelValues, []string{"443"}) || s[0].Labels != l {
		t.Errorf("shared labels: %q %p", s[0].LabelValues, s[0].Labels)
	}
	for i, want := range [][]string{{"conntrack", "443", "orig", "pkts"}, {"conntrack", "443"}, nil, {"plain"}} {
		if got := s[i].GraphitePath(); !slices.Equal(got, want) || (want == nil) != (got == nil) {
			t.Errorf("sample %d: GraphitePath %q, want %q", i, got, want)
		}
	}
	if !slices.Equal(head, []string{"conntrack", "443"}) {
		t.Errorf("the shared path was changed: %q", head)
	}
	if testDesc.Leaf != nil || origPkts.Name != testDesc.Name {
		t.Errorf("WithLeaf changed the original or the name: %+v %+v", testDesc, origPkts)
	}
}

func TestLabelsTextIsMadeOnce(t *testing.T) {
	l := NewLabels("a", "b")
	names := []string{"x", "y"}
	other := []string{"x", "y"}
	calls := 0
	mk := func(n, v []string) ([]byte, bool) {
		calls++
		return []byte(n[0] + v[0]), true
	}
	for range 3 {
		if text, ok := l.Text(names, mk); string(text) != "xa" || !ok {
			t.Fatalf("Text = %q, %v", text, ok)
		}
	}
	if calls != 1 {
		t.Errorf("made %d times for the same names, want 1", calls)
	}
	l.Text(other, mk)
	if calls != 2 {
		t.Errorf("other names did not make a new text")
	}
}

// TestGrowAndDetach checks that a Builder grown to its size hands over its
// one block as it is, and keeps several blocks otherwise.
func TestGrowAndDetach(t *testing.T) {
	const n = 3 * chunkLen
	var b Builder
	b.Grow(n)
	for i := range n {
		b.Add(testDesc, float64(i), nil, "x")
	}
	s := b.detach()
	if len(s) != n || cap(s) < n+growSlack || s[n-1].Value != n-1 {
		t.Fatalf("detach: %d samples, cap %d", len(s), cap(s))
	}
	if b.Len() != 0 || b.detach() != nil {
		t.Errorf("after detach: Len %d", b.Len())
	}

	var c Builder
	c.Add(testDesc, 0, nil, "x")
	c.Grow(n) // the first block cannot hold n more: a second one
	for i := 1; i <= n+1; i++ {
		c.Add(testDesc, float64(i), nil, "x")
	}
	if c.detach() != nil {
		t.Fatal("detach handed over samples that span several blocks")
	}
	got := c.Samples()
	if len(got) != n+2 {
		t.Fatalf("%d samples, want %d", len(got), n+2)
	}
	for i, smp := range got {
		if smp.Value != float64(i) {
			t.Fatalf("sample %d is %v", i, smp.Value)
		}
	}
}

// TestTableSamples checks the samples a Table stands for, as All reads
// them after the snapshot's own: label values fixed then the row's, paths
// prefix, row path and leaf, values row by row, none for an empty table.
func TestTableSamples(t *testing.T) {
	dir := NewDesc("netfilter_test_bytes_total", "Bytes.", Counter, "direction", "dport")
	flows := NewDesc("netfilter_test_flows_total", "Flows.", Counter, "dport")
	l443, l53 := NewLabels("443"), NewLabels("53")
	tab := &Table{
		Columns: []Column{{Desc: flows.WithLeaf("flows")}, {Desc: dir.WithLeaf("orig", "bytes"), Fixed: []string{"orig"}}, {Desc: flows, NoGraphite: true}},
		Names:   []string{"dport"},
		Prefix:  []string{"ct"},
		Rows:    []Row{{Labels: l443, Path: []string{"443"}}, {Labels: l53}},
		Values:  []float64{1, 2, 9, 3, 4, 9},
	}
	var b Builder
	b.Add(testDesc, 0, []string{"first"}, "x")
	b.AddTable(tab)
	b.AddTable(&Table{Columns: tab.Columns})
	if got := b.Tables(); len(got) != 2 || got[0] != tab {
		t.Fatalf("Tables() = %v", got)
	}
	type flat struct {
		name   string
		labels []string
		shared *Labels
		path   []string
		value  float64
	}
	want := []flat{
		{"netfilter_test_value", []string{"x"}, nil, []string{"first"}, 0},
		{"netfilter_test_flows_total", []string{"443"}, l443, []string{"ct", "443", "flows"}, 1},
		{"netfilter_test_bytes_total", []string{"orig", "443"}, nil, []string{"ct", "443", "orig", "bytes"}, 2},
		{"netfilter_test_flows_total", []string{"443"}, l443, nil, 9},
		{"netfilter_test_flows_total", []string{"53"}, l53, nil, 3},
		{"netfilter_test_bytes_total", []string{"orig", "53"}, nil, nil, 4},
		{"netfilter_test_flows_total", []string{"53"}, l53, nil, 9},
	}
	var got []Sample
	for s := range b.All() {
		got = append(got, s.Clone())
	}
	snap := &Snapshot{Samples: b.Samples(), Tables: b.Tables()}
	if len(got) != len(want) || snap.Len() != len(want) {
		t.Fatalf("%d samples, Len %d, want %d", len(got), snap.Len(), len(want))
	}
	for i, w := range want {
		s := got[i]
		if s.Desc.Name != w.name || !slices.Equal(s.LabelValues, w.labels) || s.Labels != w.shared || s.Value != w.value ||
			!slices.Equal(s.GraphitePath(), w.path) || (w.path == nil) != (s.GraphitePath() == nil) {
			t.Errorf("sample %d: %s %q %p %q %v, want %+v", i, s.Desc.Name, s.LabelValues, s.Labels, s.GraphitePath(), s.Value, w)
		}
	}
	// Clones own their slices: the reader's memory is reused.
	if &got[1].LabelValues[0] == &got[4].LabelValues[0] {
		t.Error("clones share label values")
	}
	n := 0
	for range snap.All() {
		if n++; n == 2 {
			break
		}
	}
	b.Reset()
	if len(b.Tables()) != 0 {
		t.Errorf("after Reset: %d tables", len(b.Tables()))
	}
}

// TestSnapshotAppend checks that a Snapshot takes the samples and tables of
// its Builders in order, the first grown Builder's block as it is, and
// that the Builders are empty afterwards.
func TestSnapshotAppend(t *testing.T) {
	const n = 2 * chunkLen
	var first, second, third Builder
	first.Grow(n)
	for i := range n {
		first.Add(testDesc, float64(i), nil, "x")
	}
	block := first.Samples()
	for i := range 3 {
		second.Add(testDesc, float64(n+i), nil, "x")
	}
	tab := &Table{}
	second.AddTable(tab)
	third.Add(testDesc, n+3, nil, "x")

	var snap Snapshot
	snap.Append(&first, &second, &third)
	if len(snap.Samples) != n+4 || &snap.Samples[0] != &block[0] {
		t.Fatalf("%d samples (want %d), first block copied: %v", len(snap.Samples), n+4, &snap.Samples[0] != &block[0])
	}
	for i, s := range snap.Samples {
		if s.Value != float64(i) {
			t.Fatalf("sample %d is %v", i, s.Value)
		}
	}
	if len(snap.Tables) != 1 || snap.Tables[0] != tab {
		t.Errorf("tables %v, want the second Builder's", snap.Tables)
	}
	for i, b := range []*Builder{&first, &second, &third} {
		if b.Len() != 0 || len(b.Tables()) != 0 {
			t.Errorf("Builder %d not released: Len %d, %d tables", i, b.Len(), len(b.Tables()))
		}
	}

	// A first Builder without room for the rest is copied once; no
	// Builder at all still gives a non-nil slice.
	var small, more Builder
	small.Add(testDesc, 0, nil, "x")
	for i := 1; i <= chunkLen; i++ {
		more.Add(testDesc, float64(i), nil, "x")
	}
	var copied Snapshot
	copied.Append(&small, &more)
	if len(copied.Samples) != chunkLen+1 || copied.Samples[chunkLen].Value != chunkLen {
		t.Errorf("%d samples, want %d in order", len(copied.Samples), chunkLen+1)
	}
	var empty Snapshot
	if empty.Append(); empty.Samples == nil {
		t.Error("Append of nothing left Samples nil")
	}
}
