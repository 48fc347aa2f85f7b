package flow

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmFlags returns the VmFlags and the AnonHugePages (kB) of the mappings
// of this process that overlap mem, from /proc/self/smaps.
func vmFlags(t *testing.T, mem []byte) (flags []string, hugeKB int) {
	t.Helper()
	lo := uintptr(unsafe.Pointer(&mem[0]))
	hi := lo + uintptr(len(mem))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var a, b uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &a, &b); n == 2 {
			in = a < hi && b > lo
			continue
		}
		if !in {
			continue
		}
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			flags = append(flags, strings.Fields(v)...)
		}
		if v, ok := strings.CutPrefix(line, "AnonHugePages:"); ok {
			var kb int
			fmt.Sscanf(v, "%d", &kb)
			hugeKB += kb
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return flags, hugeKB
}

// checkHuge fails unless m starts at a huge page's boundary, covers whole
// huge pages and is advised to get them (VmFlags "hg").
func checkHuge(t *testing.T, m mapping) {
	t.Helper()
	if uintptr(m.p)%hugePage != 0 || m.n%hugePage != 0 {
		t.Fatalf("mapping at %#x, %d bytes: not in whole aligned huge pages", uintptr(m.p), m.n)
	}
	if flags, _ := vmFlags(t, m.bytes()); !slices.Contains(flags, "hg") {
		t.Fatalf("mapping at %#x not advised for huge pages: VmFlags %v", uintptr(m.p), flags)
	}
}

func TestMappingResize(t *testing.T) {
	for _, tc := range []struct {
		name string
		from int
		to   int
		// blocked maps a page right after the mapping, so that it
		// cannot grow in place and must move.
		blocked bool
	}{
		{"small stays small", 4096, 8192, false},
		{"small grows past a huge page", 64 << 10, 5 << 20, false},
		{"grows in place", 3 << 20, 9<<20 + 1, false},
		{"grows and moves", 3 << 20, 9<<20 + 1, true},
		{"shrinks", 9 << 20, 3<<20 + 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := mapAnon(tc.from)
			if err != nil {
				t.Skipf("no anonymous mappings here: %v", err)
			}
			defer func() { m.unmap() }()
			if int(m.n) < tc.from {
				t.Fatalf("mapped %d bytes for %d", m.n, tc.from)
			}
			if tc.from >= hugePage {
				checkHuge(t, m)
			}
			mem := m.bytes()
			for i := 0; i < len(mem); i += 4096 {
				mem[i] = byte(i / 4096)
			}
			if tc.blocked {
				p, err := unix.MmapPtr(-1, 0, unsafe.Add(m.p, m.n), 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE)
				if err != nil {
					t.Skipf("cannot map the page after the mapping: %v", err)
				}
				defer unix.MunmapPtr(p, 4096)
			}
			old := m
			if err := m.resize(tc.to); err != nil {
				t.Fatalf("resize to %d: %v", tc.to, err)
			}
			if int(m.n) < tc.to {
				t.Fatalf("resized to %d bytes for %d", m.n, tc.to)
			}
			if tc.blocked && m.p == old.p {
				t.Fatal("grew in place over the page mapped after it")
			}
			mem = m.bytes()
			for i := 0; i < min(tc.from, tc.to, len(mem)); i += 4096 {
				if mem[i] != byte(i/4096) {
					t.Fatalf("byte %d is %d after resize, want %d", i, mem[i], byte(i/4096))
				}
			}
			if tc.to >= hugePage {
				checkHuge(t, m)
			}
			clear(mem) // the new part is writable
		})
	}
}

// TestTableHugePages checks that a table grown to a million records keeps
// its array and index in huge-page mappings, and reports how much of them
// the kernel backed with huge pages (which depends on its free memory).
func TestTableHugePages(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a table of a million records")
	}
	tb := newTable[key4]()
	defer tb.free()
	for i := range 1000000 {
		k := key4{keyTail: keyTail{id: uint32(i), start: int64(i)}}
		tb.put(&k)
	}
	if tb.mem.p == nil || tb.idxMem.p == nil {
		t.Skip("the table is on the Go heap: no anonymous mappings here")
	}
	checkHuge(t, tb.mem)
	checkHuge(t, tb.idxMem)
	_, recs := vmFlags(t, tb.mem.bytes())
	_, idx := vmFlags(t, tb.idxMem.bytes())
	t.Logf("records: %d of %d MB in huge pages; index: %d of %d MB", recs>>10, tb.mem.n>>20, idx>>10, tb.idxMem.n>>20)
}
