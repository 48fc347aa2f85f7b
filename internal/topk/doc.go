// Package topk ranks keys by the bytes they moved over a sliding window,
// in bounded memory: the top talkers of the conntrack pipeline.
//
// # Model
//
// A TopK is fed deltas (Add: bytes and packets per direction for one key)
// from one goroutine and read (Top, Snapshot) from any number of others. The
// window is made of Buckets buckets of Window/Buckets each; the clock the
// caller gives in Config.Clock moves the window forward when Advance is
// called, and only then. An Add lands in the bucket that was current at the
// latest Advance, so the pipeline calls Advance once per batch of events or
// per dump round, and hands over any sums it holds first when the window
// is about to move (at StepEnd). A reading (Top, Snapshot) leaves out the buckets
// the window ending at the clock's now has passed, and moves nothing.
//
// Each bucket holds at most Capacity keys. While a bucket's distinct keys
// fit, it is exact; beyond that it is a Space-Saving summary (Metwally,
// Agrawal and El Abbadi, 2005) with batched eviction: when a new key finds
// the bucket full, about the smallest eighth of the entries is evicted at
// once, below a threshold estimated from a sample of their counts, and the
// bucket's floor becomes the largest count evicted. Every key not in the
// bucket moved at most floor bytes in it, so a new key starts at the
// floor, which is its error. The evicted slots are holes that the next
// new keys take, so that no entry moves until the bucket is sealed.
// Evicting in batches makes an Add O(1) amortised (no heap to keep
// ordered) at the price of a floor slightly above the single minimum that
// plain Space-Saving would give.
//
// # Merging
//
// Top merges the window's buckets: for each key, its counts are summed over
// the buckets that hold it, and its error is the sum of the errors it got
// in those buckets plus the floors of the buckets that do not hold it. The
// merged upper bound (Row.Bytes) is then within [truth, truth + Error] for
// the orig + reply bytes of the key over the window, and the counts per
// direction (counted while the key was held) are within [truth - Error,
// truth]. Keys are ranked by the upper bound, as Space-Saving does; any key
// whose true total exceeds the n-th largest by more than the largest error
// reported is among the n rows. With no eviction in the window every error
// is 0 and every count exact.
//
// # Concurrency and cost
//
// A mutex guards the buckets. Add takes it (uncontended: the scrapes hold
// it only to copy the current bucket and pin the sealed ones), looks the
// key up in the current bucket's index (open addressing over a table of
// twice the capacity, which holds part of each key's hash and screens
// most other keys without reading their entry) and adds: no allocation
// once the bucket's storage has grown. An eviction reads the weights and
// hashes the bucket keeps beside its entries (24 bytes an entry), not the
// 64-byte entries. Sealed buckets are immutable, so Top merges
// them outside the lock; a sealed bucket that expires is cleared and reused
// for the next bucket unless a Top still reads it, in which case fresh
// storage is allocated and the old one left to the collector.
package topk
