package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// denyIOURingEnv makes the test binary run its arguments as a command under
// a seccomp filter that refuses io_uring_setup with EPERM, as Docker's and
// Kubernetes' default seccomp profiles do.
const denyIOURingEnv = "NFE_TEST_DENY_IO_URING"

// withoutIOURing returns a command that runs the exporter with args under
// that filter.
func withoutIOURing(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{binary}, args...)...)
	cmd.Env = append(os.Environ(), denyIOURingEnv+"=1")
	return cmd
}

// execWithoutIOURing installs the filter and executes argv; it does not
// return.
func execWithoutIOURing(argv []string) {
	runtime.LockOSThread()
	const sysIOURingSetup = 425 // the same number on every architecture
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: sysIOURingSetup, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_NO_NEW_PRIVS:", err)
		os.Exit(2)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		fmt.Fprintln(os.Stderr, "seccomp:", errno)
		os.Exit(2)
	}
	err := unix.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(2)
}

// TestIOURingForbiddenBySeccomp runs the exporter where seccomp forbids
// io_uring: by default it falls back to recvmmsg, says so, and counts every
// event; asked for io_uring explicitly, the conntrack collector fails alone.
func TestIOURingForbiddenBySeccomp(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t)
	e := startExporterCmd(t, withoutIOURing, "--netns="+ns.Path(), "--no-collector.nfacct")
	mfs := burst(t, e, ns, 5000)
	if v := mustValue(t, mfs, "netfilter_conntrack_listener_info", map[string]string{"method": "recvmmsg"}); v != 1 {
		t.Errorf("listener_info{method=\"recvmmsg\"} = %v, want 1", v)
	}
	if events := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil); events != 5000 {
		t.Errorf("events_total = %v, want 5000", events)
	}
	if log := e.stderr.String(); !strings.Contains(log, "received with recvmmsg") || !strings.Contains(log, "operation not permitted") {
		t.Errorf("the log does not say that io_uring is refused and recvmmsg used:\n%s", log)
	}

	e = startExporterCmd(t, withoutIOURing, "--netns="+ns.Path(), "--no-collector.nfacct", "--conntrack.receive-method=io_uring")
	_, mfs = e.scrape(t)
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "conntrack"}); v != 0 {
		t.Errorf("conntrack collector success = %v with io_uring forced and forbidden, want 0", v)
	}
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "conntrack_stats"}); v != 1 {
		t.Errorf("conntrack_stats collector success = %v, want 1: the others go on", v)
	}
	if log := e.stderr.String(); !strings.Contains(log, "io_uring_setup: operation not permitted") {
		t.Errorf("the log does not name the refused io_uring_setup:\n%s", log)
	}
}
