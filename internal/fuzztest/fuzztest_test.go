package fuzztest

import "testing"

var sink []byte

// TestBoundedCatchesClaimedLength checks that an allocation sized by a
// length field, not by the input, fails the bound, and that one the size
// of the input does not.
func TestBoundedCatchesClaimedLength(t *testing.T) {
	input := make([]byte, 100)
	Bounded(t, len(input), func() { sink = append([]byte(nil), input...) })

	ft := &fakeT{TB: t}
	Bounded(ft, len(input), func() { sink = make([]byte, 64<<10) }) // an attribute's claimed 64 KiB
	if !ft.failed {
		t.Error("a 64 KiB allocation for a 100-byte input passed the bound")
	}
}

// fakeT records a failure instead of ending the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
