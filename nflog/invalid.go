package nflog

// Conntrack's invalid-packet messages: conntrack logs them through the
// family's logger, to group 0 when that logger is nfnetlink_log, and only
// while nf_conntrack_log_invalid names the protocol.

import (
	"fmt"
	"os"
	"strings"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// InvalidGroup is the group conntrack's invalid-packet messages go to.
const InvalidGroup = 0

// The sysctls of invalid-packet logging, under /proc/sys.
const (
	SysctlLoggerIPv4 = "net/netfilter/nf_log/2"
	SysctlLoggerIPv6 = "net/netfilter/nf_log/10"
	SysctlLogInvalid = "net/netfilter/nf_conntrack_log_invalid"
)

// SysctlChange is a sysctl EnableInvalidLogging changed: its name and its
// value before and after.
type SysctlChange struct {
	Name, Old, New string
}

// EnableInvalidLogging makes conntrack's invalid-packet messages reach
// group InvalidGroup in the namespace netNS (0: the caller's): the IPv4
// and IPv6 loggers are set to nfnetlink_log and nf_conntrack_log_invalid to
// 255 (every protocol), where they are not already. It returns what it
// changed, to be given to RestoreSysctls at exit: the loggers outlive the
// socket. On error it has undone its own changes.
func EnableInvalidLogging(netNS int) ([]SysctlChange, error) {
	var changes []SysctlChange
	for _, want := range []SysctlChange{
		{Name: SysctlLoggerIPv4, New: "nfnetlink_log"},
		{Name: SysctlLoggerIPv6, New: "nfnetlink_log"},
		{Name: SysctlLogInvalid, New: "255"},
	} {
		old, err := readSysctl(netNS, want.Name)
		if err != nil {
			RestoreSysctls(netNS, changes)
			return nil, err
		}
		if old == want.New {
			continue
		}
		if err := writeSysctl(netNS, want.Name, want.New); err != nil {
			RestoreSysctls(netNS, changes)
			return nil, err
		}
		want.Old = old
		changes = append(changes, want)
	}
	return changes, nil
}

// RestoreSysctls sets the sysctls of changes back to their old values, the
// last changed first, and returns the first error.
func RestoreSysctls(netNS int, changes []SysctlChange) error {
	var first error
	for i := len(changes) - 1; i >= 0; i-- {
		if err := writeSysctl(netNS, changes[i].Name, changes[i].Old); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// readSysctl reads a sysctl of the namespace netNS, without its newline.
func readSysctl(netNS int, name string) (string, error) {
	var v string
	err := netns.Do(netNS, func() error {
		b, err := os.ReadFile("/proc/sys/" + name)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", strings.ReplaceAll(name, "/", "."), err)
	}
	return v, nil
}

// writeSysctl sets a sysctl of the namespace netNS.
func writeSysctl(netNS int, name, v string) error {
	err := netns.Do(netNS, func() error {
		return os.WriteFile("/proc/sys/"+name, []byte(v), 0)
	})
	if err != nil {
		return fmt.Errorf("setting sysctl %s to %s: %w", strings.ReplaceAll(name, "/", "."), v, err)
	}
	return nil
}

// InvalidReason returns the reason of a conntrack invalid-packet message
// from its prefix, appended to dst: the text without its "nf_ct_proto_6: "
// head and surrounding spaces, each run of digits made N, so that the
// reasons stay a small set ("SEQ is over upper bound 1027999487 (over the
// window of the receiver)" reads "SEQ is over upper bound N (over the
// window of the receiver)"). ok is false when prefix is not one.
func InvalidReason(dst, prefix []byte) (reason []byte, ok bool) {
	const head = "nf_ct_"
	if len(prefix) < len(head) || string(prefix[:len(head)]) != head {
		return dst, false
	}
	rest := prefix[len(head):]
	for i := 0; i+1 < len(rest); i++ {
		if rest[i] == ':' && rest[i+1] == ' ' {
			rest = rest[i+2:]
			break
		}
	}
	// Trim spaces.
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	for len(rest) > 0 && rest[len(rest)-1] == ' ' {
		rest = rest[:len(rest)-1]
	}
	inDigits := false
	for _, c := range rest {
		if c >= '0' && c <= '9' {
			if !inDigits {
				dst = append(dst, 'N')
			}
			inDigits = true
			continue
		}
		inDigits = false
		dst = append(dst, c)
	}
	return dst, true
}
