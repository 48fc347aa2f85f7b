package netns_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

var names atomic.Int64

// ipNetns runs ip netns with args.
func ipNetns(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"netns"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip netns %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// namedNS makes a namespace under /var/run/netns that the test itself may
// delete and add again, and returns its name and path.
func namedNS(t *testing.T) (string, string) {
	t.Helper()
	name := fmt.Sprintf("nfe-netns-%d-%d", os.Getpid(), names.Add(1))
	ipNetns(t, "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return name, "/var/run/netns/" + name
}

// inode returns the inode of the namespace at path.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestKernelDo: fn runs in the namespace; the caller's thread stays in its
// own.
func TestKernelDo(t *testing.T) {
	netnstest.Require(t)
	_, path := namedNS(t)
	h, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own := inode(t, "/proc/thread-self/ns/net")
	var inside uint64
	if err := h.Do(func() error {
		inside = inode(t, "/proc/thread-self/ns/net")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := inode(t, path); inside != want || inside == own {
		t.Errorf("fn ran in namespace %d, want %d (the caller's is %d)", inside, want, own)
	}
	if now := inode(t, "/proc/thread-self/ns/net"); now != own {
		t.Errorf("the caller's thread moved to namespace %d", now)
	}
}

// TestKernelFollowReplaced: ip netns del and add again, seen between two
// checks or across one.
func TestKernelFollowReplaced(t *testing.T) {
	netnstest.Require(t)
	name, path := namedNS(t)
	f, err := netns.Follow(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check := func(wantWhy string, wantGen uint64) {
		t.Helper()
		changed, why, err := f.Check()
		if err != nil || !changed || !strings.Contains(why, wantWhy) {
			t.Fatalf("Check = %v, %q, %v; want a change: %q", changed, why, err, wantWhy)
		}
		if _, gen, _ := f.Current(); gen != wantGen {
			t.Fatalf("generation %d, want %d", gen, wantGen)
		}
	}
	old := inode(t, path)
	ipNetns(t, "del", name)
	ipNetns(t, "add", name)
	if inode(t, path) == old {
		t.Skip("the new namespace got the old one's inode; nothing to tell them apart")
	}
	check("another network namespace replaced it", 2)
	h, _, err := f.Current()
	if err != nil || h.Path() != path {
		t.Fatalf("Current = %v, %v", h, err)
	}
	ipNetns(t, "del", name)
	check("removed from its path", 3)
	ipNetns(t, "add", name)
	check("appeared at its path again", 4)
}
