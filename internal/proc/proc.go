package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/<pid>/stat (USER_HZ).
const userHZ = 100

var errFormat = errors.New("unexpected format")

// CPUTime returns the processor time, user and system, that process pid has
// used: on a busy host it moves less than wall time.
func CPUTime(pid int) (time.Duration, error) {
	user, sys, err := Times(pid)
	return user + sys, err
}

// Times returns the processor time that process pid has used in user mode
// and in the kernel.
func Times(pid int) (user, sys time.Duration, err error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	// The command name, in parentheses, may hold spaces: fields are
	// counted from after its closing parenthesis.
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, 0, fmt.Errorf("%s: %w: %q", path, errFormat, s)
	}
	fields := strings.Fields(s[i+2:])
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("%s: %w: %q", path, errFormat, s)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%s: %w: %q", path, errFormat, s)
	}
	return time.Duration(utime) * time.Second / userHZ, time.Duration(stime) * time.Second / userHZ, nil
}

// StatusMB returns a memory field of /proc/<pid>/status (VmHWM, VmRSS...),
// in megabytes (MiB).
func StatusMB(pid int, field string) (float64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, field, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}
