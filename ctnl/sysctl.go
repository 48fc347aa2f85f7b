package ctnl

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// Settings that make DESTROY events carry what accounting needs.
const (
	// SysctlAcct makes conntrack count packets and bytes per direction.
	SysctlAcct = "net/netfilter/nf_conntrack_acct"
	// SysctlTimestamp makes conntrack record start and stop times.
	SysctlTimestamp = "net/netfilter/nf_conntrack_timestamp"
	// SysctlEvents decides which flows send events: 1 every flow, 2 (the
	// default since Linux 5.x) only flows created while some conntrack
	// listener existed, 0 none.
	SysctlEvents = "net/netfilter/nf_conntrack_events"
)

var errSysctlValue = errors.New("unexpected sysctl value")

// ReadSysctl reads a boolean sysctl under /proc/sys, such as SysctlAcct, in
// the namespace ns (nil: the caller's).
func ReadSysctl(ns *netns.Handle, name string) (bool, error) {
	v, err := ReadSysctlInt(ns, name)
	if err != nil {
		return false, err
	}
	switch v {
	case 0:
		return false, nil
	case 1:
		return true, nil
	default:
		return false, fmt.Errorf("%w %d in %s: want 0 or 1", errSysctlValue, v, name)
	}
}

// ReadSysctlInt reads an integer sysctl under /proc/sys, such as
// SysctlEvents, in the namespace ns (nil: the caller's).
func ReadSysctlInt(ns *netns.Handle, name string) (int, error) {
	var data []byte
	err := ns.Do(func() (err error) {
		data, err = os.ReadFile("/proc/sys/" + name)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", name, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%w %q in %s", errSysctlValue, strings.TrimSpace(string(data)), name)
	}
	return v, nil
}

// WriteSysctl sets a boolean sysctl under /proc/sys in the namespace ns.
func WriteSysctl(ns *netns.Handle, name string, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return WriteSysctlInt(ns, name, v)
}

// WriteSysctlInt sets an integer sysctl under /proc/sys in the namespace ns.
func WriteSysctlInt(ns *netns.Handle, name string, v int) error {
	err := ns.Do(func() error {
		return os.WriteFile("/proc/sys/"+name, []byte(strconv.Itoa(v)+"\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	return nil
}
