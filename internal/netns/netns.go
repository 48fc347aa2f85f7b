package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	errNotNetns = errors.New("not a network namespace")
	errGone     = errors.New("network namespace is gone")
)

// Handle is an open network namespace. The zero Handle (from Open(""))
// stands for the exporter's own namespace.
type Handle struct {
	f   *os.File
	ino uint64 // the namespace's inode number: its identity
}

// Open opens the namespace at path, such as /var/run/netns/fw or
// /proc/1234/ns/net, and checks that it is a network namespace. An empty
// path returns the zero Handle.
func Open(path string) (*Handle, error) {
	if path == "" {
		return &Handle{}, nil
	}
	// Without blocking: a named pipe given by mistake would block the open
	// until something writes to it; it is then refused below.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace: %w", err)
	}
	// /proc/PID/ns/* and their bind mounts under /var/run/netns live on
	// nsfs; the kernel tells which kind of namespace a file is.
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("checking network namespace %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("%s: %w (not a namespace file)", path, errNotNetns)
	}
	if typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE); err == nil && typ != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("%s: %w (%s namespace)", path, errNotNetns, nsType(typ))
	}
	var s unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &s); err != nil {
		f.Close()
		return nil, fmt.Errorf("checking network namespace %s: %w", path, err)
	}
	return &Handle{f: f, ino: s.Ino}, nil
}

// nsType names a CLONE_NEW* namespace type.
func nsType(t int) string {
	switch t {
	case unix.CLONE_NEWNS:
		return "a mount"
	case unix.CLONE_NEWUTS:
		return "a UTS"
	case unix.CLONE_NEWIPC:
		return "an IPC"
	case unix.CLONE_NEWUSER:
		return "a user"
	case unix.CLONE_NEWPID:
		return "a PID"
	case unix.CLONE_NEWCGROUP:
		return "a cgroup"
	case unix.CLONE_NEWTIME:
		return "a time"
	}
	return fmt.Sprintf("type %#x", t)
}

// FD returns the namespace's descriptor, or 0 for the exporter's own
// namespace: what the kernel clients' configurations take.
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
// Handle it runs fn on the calling goroutine.
func (h *Handle) Do(fn func() error) error {
	return Do(h.FD(), fn)
}

// Do runs fn on an OS thread that has entered the network namespace whose
// descriptor is fd; with fd 0 it runs fn on the calling goroutine. Sockets
// and files fn opens belong to the namespace for their whole life, whatever
// thread uses them later. The thread is discarded afterwards, never reused
// in the wrong namespace.
func Do(fd int, fn func() error) error {
	if fd == 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", CapabilityHint(err, "CAP_SYS_ADMIN"))
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// CapabilityHint adds to a permission error the capability that is missing:
// CAP_NET_ADMIN for netlink, CAP_SYS_ADMIN to enter another namespace
// (whatever capability is given, an error of setns names CAP_SYS_ADMIN).
func CapabilityHint(err error, capability string) error {
	if err == nil || !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "(it needs CAP_") {
		return err
	}
	if strings.Contains(msg, "setns") || strings.Contains(msg, "entering network namespace") {
		capability = "CAP_SYS_ADMIN, for --netns"
	}
	return fmt.Errorf("%w (it needs %s)", err, capability)
}
