package ctnl

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// Settings that make DESTROY events carry what accounting needs.
const (
	// SysctlAcct makes conntrack count packets and bytes per direction.
	SysctlAcct = "net/netfilter/nf_conntrack_acct"
	// SysctlTimestamp makes conntrack record start and stop times.
	SysctlTimestamp = "net/netfilter/nf_conntrack_timestamp"
)

var errSysctlValue = errors.New("unexpected sysctl value")

// ReadSysctl reads a boolean sysctl under /proc/sys, such as SysctlAcct, in
// the namespace ns (nil: the caller's).
func ReadSysctl(ns *netns.Handle, name string) (bool, error) {
	var data []byte
	err := ns.Do(func() (err error) {
		data, err = os.ReadFile("/proc/sys/" + name)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", name, err)
	}
	switch v := strings.TrimSpace(string(data)); v {
	case "0":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, fmt.Errorf("%w %q in %s", errSysctlValue, v, name)
	}
}

// WriteSysctl sets a boolean sysctl under /proc/sys in the namespace ns.
func WriteSysctl(ns *netns.Handle, name string, on bool) error {
	v := "0\n"
	if on {
		v = "1\n"
	}
	err := ns.Do(func() error {
		return os.WriteFile("/proc/sys/"+name, []byte(v), 0o644)
	})
	if err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	return nil
}
