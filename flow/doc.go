// Package flow sums per-flow conntrack deltas into a bounded set of series.
//
// A Delta carries what one flow moved since the last Delta of the same flow:
// packets and bytes in both directions, plus its tuples, zone and mark. The
// conntrack event listener feeds one Final Delta per destroyed flow; a table
// dump mode may feed intermediate deltas too. Only Final deltas count as
// finished flows and observe a duration.
//
// An Aggregator keys each Delta by the values of the Keys the user groups by
// (family, proto, dport by default), after mapping addresses to named
// Networks and ports to a Ports list, and drops deltas a Filter rejects. It
// holds at most Config.MaxSeries series; deltas of new key combinations past
// that limit are summed into one overflow series whose every key reads
// "other", so totals stay exact. The Aggregator is a collector: Update adds
// its samples to a tree.Builder.
//
// Add and AddBatch do not allocate for deltas of existing series; they are
// meant for a single feeding goroutine, while Update may run concurrently
// from scrapes.
package flow
