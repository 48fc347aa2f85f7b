//go:build race

package graphite

// allocChunk returns an empty slice of capacity n from the Go heap. Under the
// race detector chunks stay on the heap, where the detector watches them;
// see chunkmem.go for the mapping used otherwise.
func allocChunk(n int) []byte { return make([]byte, 0, n) }

// freeChunk leaves the memory of a chunk to the garbage collector.
func freeChunk([]byte) {}
