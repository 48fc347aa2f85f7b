package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"syscall"
)

// Follower keeps the namespace at a path open, and notices when the
// namespace there goes away (ip netns del) or is replaced by another one
// (ip netns add again): it holds the namespace the exporter works in, for
// as long as it is the one at the path.
type Follower struct {
	path string

	mu  sync.Mutex
	cur *Handle // nil while the path holds no namespace
	gen uint64  // counts the namespaces followed
}

// Follow opens the namespace at path and returns a Follower of it. An empty
// path follows the exporter's own namespace, which never changes.
func Follow(path string) (*Follower, error) {
	h, err := Open(path)
	if err != nil {
		return nil, err
	}
	return &Follower{path: path, cur: h, gen: 1}, nil
}

// Path returns the followed path, "" for the own namespace.
func (f *Follower) Path() string {
	return f.path
}

// Current returns the namespace now at the path and its generation, which
// changes whenever the namespace does; or an error naming the path when the
// namespace is gone.
func (f *Follower) Current() (*Handle, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		return nil, f.gen, fmt.Errorf("%s: %w", f.path, errGone)
	}
	return f.cur, f.gen, nil
}

// Check looks at the path again. It reports whether the namespace changed
// (gone, back, or replaced), and why in a sentence fit for a log. The old
// Handle is closed on a change: callers must stop using it first (Check is
// called by the one task that also rebuilds what uses the namespace).
func (f *Follower) Check() (changed bool, why string, err error) {
	if f.path == "" {
		return false, "", nil
	}
	var st syscall.Stat_t
	serr := syscall.Stat(f.path, &st)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case serr != nil && errors.Is(serr, fs.ErrNotExist):
		if f.cur == nil {
			return false, "", nil
		}
		f.cur.Close()
		f.cur = nil
		f.gen++
		return true, "the network namespace was removed from its path", nil
	case serr != nil:
		return false, "", fmt.Errorf("checking network namespace %s: %w", f.path, serr)
	case f.cur != nil && st.Ino == f.cur.ino:
		return false, "", nil
	}
	// A namespace (again, or another one) is at the path.
	h, err := Open(f.path)
	if err != nil {
		return false, "", err
	}
	why = "a network namespace appeared at its path again"
	if f.cur != nil {
		why = "another network namespace replaced it at its path"
		f.cur.Close()
	}
	f.cur = h
	f.gen++
	return true, why, nil
}

// Close releases the namespace.
func (f *Follower) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		return nil
	}
	err := f.cur.Close()
	f.cur = nil
	return err
}

// IsGone reports whether err says that a followed namespace is gone.
func IsGone(err error) bool {
	return errors.Is(err, errGone)
}
