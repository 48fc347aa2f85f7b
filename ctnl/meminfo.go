package ctnl

// The socket's own counters, read with SO_MEMINFO: the kernel's drop count
// (exact loss accounting) and the bytes waiting in the receive queue.

import "fmt"

// Indexes of the counters SO_MEMINFO returns (SK_MEMINFO_*).
const (
	// skMeminfoRmemAlloc is the index of SK_MEMINFO_RMEM_ALLOC: bytes
	// queued for reading.
	skMeminfoRmemAlloc = 0
	// skMeminfoDrops is the index of SK_MEMINFO_DROPS.
	skMeminfoDrops = 8
	skMeminfoVars  = 9
)

// drops reads the socket's drop counter (SK_MEMINFO_DROPS).
func (l *Listener) drops() (uint64, error) {
	mem, err := l.sock.meminfo()
	if err != nil {
		return 0, fmt.Errorf("reading the socket's drop counter: %w", err)
	}
	return uint64(mem[skMeminfoDrops]), nil
}

// queued reports whether events wait in the socket's receive queue
// (SK_MEMINFO_RMEM_ALLOC).
func (l *Listener) queued() bool {
	mem, err := l.sock.meminfo()
	return err == nil && mem[skMeminfoRmemAlloc] > 0
}
