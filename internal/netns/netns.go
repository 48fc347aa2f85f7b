package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

var errNotNetns = errors.New("not a network namespace file")

// Handle is an open network namespace. The zero Handle (from Open(""))
// stands for the exporter's own namespace.
type Handle struct {
	f *os.File
}

// Open opens the namespace at path, such as /var/run/netns/fw or
// /proc/1234/ns/net. An empty path returns the zero Handle.
func Open(path string) (*Handle, error) {
	if path == "" {
		return &Handle{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("checking network namespace %s: %w", path, err)
	}
	// /proc/PID/ns/net lives on nsfs; a bind mount under /var/run/netns too.
	if st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, errNotNetns)
	}
	return &Handle{f: f}, nil
}

// FD returns the namespace's descriptor, or 0 for the exporter's own
// namespace, as netlink.Config.NetNS takes it.
func (h *Handle) FD() int {
	if h == nil || h.f == nil {
		return 0
	}
	return int(h.f.Fd())
}

// Path returns the path the Handle was opened from, "" for the own
// namespace.
func (h *Handle) Path() string {
	if h == nil || h.f == nil {
		return ""
	}
	return h.f.Name()
}

// Close releases the namespace.
func (h *Handle) Close() error {
	if h == nil || h.f == nil {
		return nil
	}
	return h.f.Close()
}

// Do runs fn on an OS thread that has entered the namespace; with the zero
// Handle it runs fn on the calling goroutine. Sockets and files fn opens
// belong to the namespace for their whole life, whatever thread uses them
// later. The thread is discarded afterwards, never reused in the wrong
// namespace.
func (h *Handle) Do(fn func() error) error {
	if h.FD() == 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Setns(h.FD(), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace %s: %w", h.Path(), err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
