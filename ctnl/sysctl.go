package ctnl

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// Settings that make DESTROY events carry what accounting needs.
const (
	// sysctlAcct makes conntrack count packets and bytes per direction.
	sysctlAcct = "net/netfilter/nf_conntrack_acct"
	// sysctlTimestamp makes conntrack record start and stop times.
	sysctlTimestamp = "net/netfilter/nf_conntrack_timestamp"
	// sysctlEvents decides which flows send events: 1 every flow, 2 (the
	// default since Linux 5.x) only flows created while some conntrack
	// listener existed, 0 none.
	sysctlEvents = "net/netfilter/nf_conntrack_events"
)

// readSysctlInt reads an integer sysctl under /proc/sys, such as
// sysctlEvents, in the network namespace whose descriptor is fd (0: the caller's).
func readSysctlInt(fd int, name string) (int, error) {
	var data []byte
	err := netns.Do(fd, func() (err error) {
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

// writeSysctlInt sets an integer sysctl under /proc/sys in the network namespace whose descriptor is fd.
func writeSysctlInt(fd int, name string, v int) error {
	err := netns.Do(fd, func() error {
		return os.WriteFile("/proc/sys/"+name, []byte(strconv.Itoa(v)+"\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	return nil
}

// Setting is the state of one of the sysctls accounting needs.
type Setting struct {
	// Name is the sysctl, dotted: net.netfilter.nf_conntrack_acct.
	Name string
	// Value is what it reads (after Switched), Want what accounting needs.
	Value, Want int
	// Switched tells that AccountingSettings set it to Want.
	Switched bool
	// Err is why it could not be read or set.
	Err error
}

// OK reports whether the setting is what accounting needs.
func (s Setting) OK() bool {
	return s.Err == nil && s.Value == s.Want
}

// AccountingSettings reads the three sysctls that decide what conntrack
// accounting sees in the namespace fd (0: the caller's): nf_conntrack_acct
// (counters), nf_conntrack_timestamp (start and stop times) and
// nf_conntrack_events (1: every flow sends events; 2, the default, only
// those created while some listener existed). With enable, it sets to 1
// those that are not; they apply to flows created afterwards.
func AccountingSettings(fd int, enable bool) []Setting {
	var out []Setting
	for _, name := range []string{sysctlAcct, sysctlTimestamp, sysctlEvents} {
		s := Setting{Name: strings.ReplaceAll(name, "/", "."), Want: 1}
		s.Value, s.Err = readSysctlInt(fd, name)
		if enable && s.Err == nil && s.Value != s.Want {
			if s.Err = writeSysctlInt(fd, name, s.Want); s.Err == nil {
				s.Value, s.Switched = s.Want, true
			}
		}
		out = append(out, s)
	}
	return out
}
