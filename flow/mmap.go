package flow

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page (x86-64 and arm64 with
// 4 KiB pages). A mapping gets huge pages only where it covers whole
// aligned ones.
const hugePage = 2 << 20

// A mapping is anonymous memory outside the Go heap. One of at least a huge
// page starts at a huge page's boundary and asks for huge pages
// (MADV_HUGEPAGE) from its first byte, and it keeps both when it grows: a
// table read at random in a mapping of small pages would miss the TLB on
// nearly every access (a page walk, dearer still in a virtual machine).
// Only memory faulted in after the advice gets huge pages, and a mapping the
// kernel moves to an unaligned place loses them, which is why the advice
// and the alignment are the mapping's from the start rather than added once
// a table is large.
type mapping struct {
	p unsafe.Pointer
	n uintptr
}

// roundSize returns the length of a mapping for n bytes: n itself when it
// is less than a huge page, else n rounded up to whole huge pages, so that
// the last one is huge too, and stays so when the mapping grows (a page
// faulted in while the mapping ended inside it would stay small). What
// lies past n is never touched, so it takes no memory.
func roundSize(n int) uintptr {
	size := uintptr(n)
	if size < hugePage {
		return size
	}
	return (size + hugePage - 1) &^ (hugePage - 1)
}

// mapAnon returns a new mapping of at least n bytes, n > 0.
func mapAnon(n int) (mapping, error) {
	size := roundSize(n)
	if size < hugePage {
		p, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return mapping{}, err
		}
		return mapping{p, size}, nil
	}
	// Map a huge page more than asked, then give back what lies before
	// the first boundary and after the end.
	p, err := unix.MmapPtr(-1, 0, nil, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return mapping{}, err
	}
	head := (hugePage - uintptr(p)%hugePage) % hugePage
	if head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	// The tail, hugePage-head, is never empty: head is under a huge page.
	_ = unix.MunmapPtr(unsafe.Add(p, head+size), hugePage-head)
	m := mapping{unsafe.Add(p, head), size}
	m.advise()
	return m, nil
}

// advise asks for huge pages for m.
func (m mapping) advise() {
	if m.n >= hugePage {
		_ = unix.Madvise(m.bytes(), unix.MADV_HUGEPAGE)
	}
}

// bytes returns m's memory.
func (m mapping) bytes() []byte {
	if m.p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(m.p), m.n)
}

// resize makes m at least n bytes long, keeping its content: in place when the
// address space after it is free or it shrinks, else by moving its pages
// (the kernel moves page tables, not memory) to a new aligned place. On
// error m is unchanged.
func (m *mapping) resize(n int) error {
	size := roundSize(n)
	if p, err := unix.MremapPtr(m.p, m.n, nil, size, 0); err == nil {
		m.p, m.n = p, size
		m.advise()
		return nil
	}
	dst, err := mapAnon(n)
	if err != nil {
		return err
	}
	p, err := unix.MremapPtr(m.p, m.n, dst.p, size, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED)
	if err != nil {
		dst.unmap()
		return err
	}
	m.p, m.n = p, size
	m.advise()
	return nil
}

// unmap gives m's memory back; m is empty afterwards.
func (m *mapping) unmap() {
	if m.p != nil {
		_ = unix.MunmapPtr(m.p, m.n)
	}
	*m = mapping{}
}
