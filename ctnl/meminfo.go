package ctnl

// The socket's own counters, read with SO_MEMINFO: the kernel's drop count
// (exact loss accounting) and the bytes waiting in the receive queue.

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Indexes of the counters SO_MEMINFO returns (SK_MEMINFO_*).
const (
	// skMeminfoRmemAlloc is the index of SK_MEMINFO_RMEM_ALLOC: bytes
	// queued for reading.
	skMeminfoRmemAlloc = 0
	// skMeminfoDrops is the index of SK_MEMINFO_DROPS.
	skMeminfoDrops = 8
	skMeminfoVars  = 9
)

// meminfo reads the socket's SO_MEMINFO counters.
func (l *Listener) meminfo() ([skMeminfoVars]uint32, error) {
	var mem [skMeminfoVars]uint32
	size := uint32(unsafe.Sizeof(mem))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(l.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return mem, errno
	}
	return mem, nil
}

// drops reads the socket's drop counter (SK_MEMINFO_DROPS).
func (l *Listener) drops() (uint64, error) {
	mem, err := l.meminfo()
	if err != nil {
		return 0, fmt.Errorf("reading the socket's drop counter: %w", err)
	}
	return uint64(mem[skMeminfoDrops]), nil
}

// queued reports whether events wait in the socket's receive queue
// (SK_MEMINFO_RMEM_ALLOC).
func (l *Listener) queued() bool {
	mem, err := l.meminfo()
	return err == nil && mem[skMeminfoRmemAlloc] > 0
}
