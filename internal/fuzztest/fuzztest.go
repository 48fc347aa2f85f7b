package fuzztest

import (
	"runtime/metrics"
	"testing"
)

// Slack is the allocation every input may make beyond PerByte bytes per
// input byte. The runtime counts small objects a span at a time (up to 32
// KiB at once), so a bound tighter than that would fail at random; an
// allocation sized by a hostile length field (a message claiming up to 4
// GiB, an attribute up to 64 KiB) is a large object, counted exactly, and
// passes the bound as soon as it exceeds the input by this much.
const Slack = 48 << 10

// PerByte is the allocation every input byte may cause: a decoder copies
// names and error messages quote a few numbers, never more than a few
// times the input.
const PerByte = 16

// allocated returns the bytes allocated on the heap since the program
// started, as the runtime counts them.
func allocated() uint64 {
	s := [1]metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s[:])
	return s[0].Value.Uint64()
}

// Bounded runs fn, which decodes an input of n bytes, and fails t when fn
// allocates more than PerByte*n + Slack bytes each of three times it runs.
// The count is the whole process's, so the fuzzing engine's own
// allocations sometimes land in it; a decoder's allocation sized by what
// an input claims comes every time, so fn, which must do the same each
// time it is called, runs again when it went over the bound. Bounded reads
// the runtime's counters, not ReadMemStats, which stops the world and
// would cost a fuzz target most of its executions.
func Bounded(t testing.TB, n int, fn func()) {
	t.Helper()
	limit := uint64(PerByte*n + Slack)
	var got uint64
	for range 3 {
		before := allocated()
		fn()
		if got = allocated() - before; got <= limit {
			return
		}
	}
	t.Fatalf("decoding %d bytes allocated %d bytes three times over, more than %d: an allocation sized by a claimed length?", n, got, limit)
}
