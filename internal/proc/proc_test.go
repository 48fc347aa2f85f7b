package proc

import (
	"os"
	"testing"
	"time"
)

func TestOwnProcess(t *testing.T) {
	pid := os.Getpid()
	// Burn some processor time, so that there is some to read.
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	cpu, err := CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Errorf("CPUTime = %v after 50ms of work", cpu)
	}
	user, sys, err := Times(pid)
	if err != nil {
		t.Fatal(err)
	}
	if user <= 0 || user+sys < cpu {
		t.Errorf("Times = %v user, %v kernel after 50ms of work in user mode; CPUTime %v before", user, sys, cpu)
	}
	rss, err := StatusMB(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	peak, err := StatusMB(pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || peak < rss {
		t.Errorf("VmRSS %.1f MB, VmHWM %.1f MB", rss, peak)
	}
	if _, err := StatusMB(pid, "NoSuchField"); err == nil {
		t.Error("StatusMB of a field that does not exist: no error")
	}
	if _, err := CPUTime(-1); err == nil {
		t.Error("CPUTime(-1): no error")
	}
}
