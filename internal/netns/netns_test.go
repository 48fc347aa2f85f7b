package netns

// Root-free tests: the own namespace, files that are not network
// namespaces, permission hints, and a Follower of a symbolic link to the
// test's own namespace (/proc/self/ns/net, which any process may open).
// Entering other namespaces needs root: netns_kernel_test.go.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenOwn: the empty path is the exporter's own namespace: descriptor
// 0, no path, nothing to close, and Do runs fn where it is.
func TestOpenOwn(t *testing.T) {
	h, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	if h.FD() != 0 || h.Path() != "" || h.Close() != nil {
		t.Errorf("Open(\"\") = FD %d, path %q; want 0 and \"\"", h.FD(), h.Path())
	}
	errFn := errors.New("from fn")
	if err := h.Do(func() error { return errFn }); !errors.Is(err, errFn) {
		t.Errorf("Do = %v, want fn's error", err)
	}
	var nilHandle *Handle
	if nilHandle.FD() != 0 || nilHandle.Path() != "" || nilHandle.Close() != nil {
		t.Error("a nil Handle is not the own namespace")
	}
}

// TestOpenProcSelf opens the test's own namespace by its /proc file.
func TestOpenProcSelf(t *testing.T) {
	h, err := Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	if h.FD() <= 0 || h.Path() != "/proc/self/ns/net" || h.ino != st.Ino {
		t.Errorf("Handle FD %d, path %q, inode %d; want a descriptor, the path and inode %d", h.FD(), h.Path(), h.ino, st.Ino)
	}
}

// TestOpenRefuses: a missing path, a file that is not a namespace and a
// namespace of another kind are refused, saying which.
func TestOpenRefuses(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want error
		says string
	}{
		{filepath.Join(t.TempDir(), "missing"), fs.ErrNotExist, "opening network namespace"},
		{plain, errNotNetns, "not a namespace file"},
		{"/proc/self/ns/uts", errNotNetns, "a UTS namespace"},
		{"/proc/self/ns/mnt", errNotNetns, "a mount namespace"},
	}
	for _, tt := range tests {
		h, err := Open(tt.path)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("Open(%s) = %v, %v; want %v saying %q", tt.path, h, err, tt.want, tt.says)
		}
	}
}

// TestDoNeedsCapability: entering a namespace without CAP_SYS_ADMIN fails,
// naming the capability.
func TestDoNeedsCapability(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may enter namespaces; netns_kernel_test.go enters them")
	}
	h, err := Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ran := false
	err = h.Do(func() error { ran = true; return nil })
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "(it needs CAP_SYS_ADMIN)") || ran {
		t.Errorf("Do without CAP_SYS_ADMIN = %v (fn ran: %v), want EPERM naming CAP_SYS_ADMIN", err, ran)
	}
}

func TestCapabilityHint(t *testing.T) {
	other := errors.New("other")
	tests := []struct {
		err  error
		cap  string
		want string // "" for err unchanged
	}{
		{nil, "CAP_NET_ADMIN", ""},
		{other, "CAP_NET_ADMIN", ""},
		{unix.EPERM, "CAP_NET_ADMIN", "operation not permitted (it needs CAP_NET_ADMIN)"},
		{unix.EACCES, "CAP_NET_ADMIN", "permission denied (it needs CAP_NET_ADMIN)"},
		{errors.Join(errors.New("setns"), unix.EPERM), "CAP_NET_ADMIN", "(it needs CAP_SYS_ADMIN, for --netns)"},
		{CapabilityHint(unix.EPERM, "CAP_NET_ADMIN"), "CAP_SYS_ADMIN", ""}, // hinted once only
	}
	for _, tt := range tests {
		got := CapabilityHint(tt.err, tt.cap)
		switch {
		case tt.want == "" && got != tt.err:
			t.Errorf("CapabilityHint(%v) = %v, want it unchanged", tt.err, got)
		case tt.want != "" && (!strings.HasSuffix(got.Error(), tt.want) || !errors.Is(got, tt.err)):
			t.Errorf("CapabilityHint(%v) = %v, want it wrapped, ending %q", tt.err, got, tt.want)
		}
	}
}

// TestFollowOwn: a Follower of the empty path follows the own namespace,
// which never changes.
func TestFollowOwn(t *testing.T) {
	f, err := Follow("")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if changed, _, err := f.Check(); changed || err != nil {
		t.Errorf("Check = %v, %v; want no change", changed, err)
	}
	h, gen, err := f.Current()
	if err != nil || h.FD() != 0 || gen != 1 || f.Path() != "" {
		t.Errorf("Current = FD %d, generation %d, %v; want 0, 1, nil", h.FD(), gen, err)
	}
}

// TestFollowPath follows a path whose namespace goes away, comes back and
// is replaced by a file that is not a network namespace.
func TestFollowPath(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ns")
	point := func(target string) {
		t.Helper()
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Follow(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Follow of a missing path: %v, want fs.ErrNotExist", err)
	}
	point("/proc/self/ns/net")
	f, err := Follow(link)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check := func(wantChanged bool, wantWhy string, wantGen uint64) {
		t.Helper()
		changed, why, err := f.Check()
		if err != nil || changed != wantChanged || !strings.Contains(why, wantWhy) {
			t.Fatalf("Check = %v, %q, %v; want %v, %q", changed, why, err, wantChanged, wantWhy)
		}
		if _, gen, _ := f.Current(); gen != wantGen {
			t.Fatalf("generation %d, want %d", gen, wantGen)
		}
	}
	check(false, "", 1)
	first, _, _ := f.Current()
	if first.FD() <= 0 || f.Path() != link {
		t.Fatalf("Current = FD %d, path %q", first.FD(), f.Path())
	}

	os.Remove(link)
	check(true, "removed from its path", 2)
	if _, err := first.f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the Handle of a namespace gone: %v, want it closed", err)
	}
	if _, _, err := f.Current(); !IsGone(err) || !strings.Contains(err.Error(), link) {
		t.Errorf("Current with the namespace gone: %v, want gone, naming the path", err)
	}
	check(false, "", 2)

	point("/proc/self/ns/net")
	check(true, "appeared at its path again", 3)
	if h, _, err := f.Current(); err != nil || h.FD() <= 0 {
		t.Fatalf("Current = %v, %v", h, err)
	}

	// Not a network namespace: an error, the namespace followed stays.
	point("/proc/self/ns/uts")
	if changed, _, err := f.Check(); changed || !errors.Is(err, errNotNetns) {
		t.Errorf("Check of a UTS namespace = %v, %v; want no change and errNotNetns", changed, err)
	}
	if h, gen, err := f.Current(); err != nil || gen != 3 || h.FD() <= 0 {
		t.Errorf("Current = %v, %d, %v; want the namespace of generation 3", h, gen, err)
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := f.Current(); !IsGone(err) {
		t.Errorf("Current after Close: %v, want gone", err)
	}
}
