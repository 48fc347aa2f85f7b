//go:build !race

package graphite

import "golang.org/x/sys/unix"

// allocChunk returns an empty slice of capacity n whose memory is mapped
// outside the Go heap. The lines waiting for carbon and the resend window can
// hold hundreds of megabytes: kept out of the heap, they neither raise the
// garbage collector's target (which would let the rest of the exporter grow
// by as much again) nor linger after they are freed, and the memory they take
// is exactly what they hold. The pages are populated at once: a chunk is
// about to be filled, and faulting them in one by one cost a third more CPU
// time to format a large snapshot (BENCHMARKS.md). If the mapping fails, the
// memory comes from the Go heap.
func allocChunk(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return make([]byte, 0, n)
	}
	return b[:0]
}

// freeChunk gives the memory of a chunk made by allocChunk back to the system.
// Memory that came from the Go heap is not a mapping: Munmap refuses it and
// the garbage collector frees it.
func freeChunk(b []byte) {
	_ = unix.Munmap(b[:cap(b)])
}
