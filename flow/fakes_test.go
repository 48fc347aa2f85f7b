package flow

import (
	"context"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// FakeListener delivers a fixed list of batches, then waits until its
// context is done.
type FakeListener struct {
	Batches [][]ctnl.Flow
	Done    chan struct{}
	// Filters are what SetFilter was called with; SetFilterErr is what it
	// returns.
	Filters      []*ctnl.EventFilter
	SetFilterErr error
}

// Run delivers the batches and closes Done.
func (f *FakeListener) Run(ctx context.Context, fn func([]ctnl.Flow)) error {
	for _, b := range f.Batches {
		fn(b)
	}
	close(f.Done)
	<-ctx.Done()
	return nil
}

// Stats returns no counts.
func (f *FakeListener) Stats() (ctnl.ListenerStats, error) { return ctnl.ListenerStats{}, nil }

// Drained says every event was delivered: the fake delivers its batches
// before anything else happens.
func (f *FakeListener) Drained() time.Time { return time.Now() }

// SetFilter records f, unless SetFilterErr is set.
func (f *FakeListener) SetFilter(ef *ctnl.EventFilter) error {
	if f.SetFilterErr != nil {
		return f.SetFilterErr
	}
	f.Filters = append(f.Filters, ef)
	return nil
}

// FakeDumper is a conntrack table: dumps list it (less the hidden entries,
// as a dump racing with the table may miss some), lookups find it all.
type FakeDumper struct {
	Table   map[uint32]ctnl.Flow // by id
	Hidden  map[uint32]bool
	Lookups int
}

// Dump lists the table but the hidden entries.
func (f *FakeDumper) Dump(_ context.Context, _ ctnl.DumpFilter, fn func([]ctnl.Flow) error) (ctnl.DumpStats, error) {
	var fs []ctnl.Flow
	for id, fl := range f.Table {
		if !f.Hidden[id] {
			fs = append(fs, fl)
		}
	}
	return ctnl.DumpStats{Entries: len(fs), CPU: time.Millisecond, Duration: 2 * time.Millisecond}, fn(fs)
}

// Lookup finds the flow of q's source port.
func (f *FakeDumper) Lookup(_ context.Context, q *ctnl.Flow) (ctnl.Flow, bool, error) {
	f.Lookups++
	for _, fl := range f.Table {
		if fl.Orig.SPort == q.Orig.SPort {
			return fl, true, nil
		}
	}
	return ctnl.Flow{}, false, nil
}
