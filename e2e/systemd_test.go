package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// The systemd examples, and where their comments say to install them.
const (
	unitFile     = "examples/netfilter_exporter.service"
	socketFile   = "examples/netfilter_exporter.socket"
	dropInFile   = "examples/netfilter_exporter-socket.conf"
	dropInTarget = "netfilter_exporter.service.d/socket.conf"
	// installedConfig is where the unit's comment installs examples/config.yml.
	installedConfig = "/etc/netfilter_exporter/config.yml"
)

// unitSettings returns a unit file's Key=Value settings in order; a key set
// twice appears twice.
func unitSettings(t *testing.T, path string) [][2]string {
	t.Helper()
	var kv [][2]string
	for _, line := range strings.Split(string(mustRead(t, path)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a setting: %q", path, line)
		}
		kv = append(kv, [2]string{k, v})
	}
	return kv
}

// lastSetting returns the last value of key, or "".
func lastSetting(kv [][2]string, key string) string {
	v := ""
	for _, s := range kv {
		if s[0] == key {
			v = s[1]
		}
	}
	return v
}

// execArgs returns the exporter arguments of an ExecStart value, with the
// installed config path mapped back to the example it is installed from.
func execArgs(t *testing.T, execStart string) []string {
	t.Helper()
	f := strings.Fields(execStart)
	if len(f) == 0 || filepath.Base(f[0]) != exporterName {
		t.Fatalf("ExecStart=%s does not run the exporter", execStart)
	}
	args := f[1:]
	for i, a := range args {
		args[i] = strings.Replace(a, "--config.file="+installedConfig, "--config.file=examples/config.yml", 1)
	}
	return args
}

// installUnits writes the service, socket and drop-in into dir as they are
// installed under /etc/systemd/system, with ExecStart pointing at the test
// binary (systemd-analyze wants the executable to exist), and returns the
// paths of the service and socket.
func installUnits(t *testing.T, dir string) (service, socket string) {
	t.Helper()
	execPath := strings.Fields(lastSetting(unitSettings(t, unitFile), "ExecStart"))[0]
	for src, dst := range map[string]string{unitFile: "netfilter_exporter.service", socketFile: "netfilter_exporter.socket", dropInFile: dropInTarget} {
		data := strings.ReplaceAll(string(mustRead(t, src)), execPath, binary)
		p := filepath.Join(dir, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "netfilter_exporter.service"), filepath.Join(dir, "netfilter_exporter.socket")
}

// TestExampleSystemdUnit checks the unit's capabilities, its command line,
// systemd's own verification of the unit, its socket and the socket's
// drop-in, and the unit's exposure by `systemd-analyze security --offline`.
// TestExampleSystemdUnitSysctls keeps the unit's boot-time sysctl recipe
// equal to the README's Kernel prerequisites: the same settings, the same
// values, nothing left out.
func TestExampleSystemdUnitSysctls(t *testing.T) {
	setting := regexp.MustCompile(`(net\.netfilter\.[a-z_]+)\s*=\s*(\d+)`)
	read := func(text string) map[string]string {
		m := map[string]string{}
		for _, s := range setting.FindAllStringSubmatch(text, -1) {
			m[s[1]] = s[2]
		}
		return m
	}
	readme := string(mustRead(t, "README.md"))
	i := strings.Index(readme, "## Kernel prerequisites")
	j := strings.Index(readme[i:], "```ini")
	k := strings.Index(readme[i+j+6:], "```")
	if i < 0 || j < 0 || k < 0 {
		t.Fatal("README has no ini block under Kernel prerequisites")
	}
	want := read(readme[i+j : i+j+6+k])
	var recipe strings.Builder
	for _, l := range strings.Split(string(mustRead(t, unitFile)), "\n") {
		if strings.HasPrefix(l, "#") && strings.Contains(l, "net.netfilter.") {
			recipe.WriteString(l + "\n")
		}
	}
	got := read(recipe.String())
	if len(want) != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s sets %v at boot, the README %v", unitFile, got, want)
	}
}

func TestExampleSystemdUnit(t *testing.T) {
	netnstest.RequireTools(t, "systemd-analyze")
	kv := unitSettings(t, unitFile)
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if v := lastSetting(kv, k); v != "CAP_NET_ADMIN" {
			t.Errorf("%s=%s, want CAP_NET_ADMIN only", k, v)
		}
	}
	if v := lastSetting(kv, "NoNewPrivileges"); v != "yes" {
		t.Errorf("NoNewPrivileges=%s, want yes", v)
	}
	checkArgs(t, execArgs(t, lastSetting(kv, "ExecStart")))
	// systemctl reload sends SIGHUP, which reloads --config.file.
	if v := lastSetting(kv, "ExecReload"); v != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%s, want /bin/kill -HUP $MAINPID", v)
	}

	// The drop-in replaces ExecStart by the socket-activated command.
	dropIn := unitSettings(t, dropInFile)
	var starts []string
	for _, s := range dropIn {
		if s[0] == "ExecStart" {
			starts = append(starts, s[1])
		}
	}
	if len(starts) != 2 || starts[0] != "" {
		t.Fatalf("%s: want ExecStart= (reset) then the new ExecStart, got %q", dropInFile, starts)
	}
	socketArgs := execArgs(t, starts[1])
	if !slices.Contains(socketArgs, "--web.systemd-socket") || slices.ContainsFunc(socketArgs, func(a string) bool { return strings.HasPrefix(a, "--web.listen-address") }) {
		t.Errorf("%s: ExecStart=%s, want --web.systemd-socket and no --web.listen-address", dropInFile, starts[1])
	}
	checkArgs(t, socketArgs)
	if v := lastSetting(unitSettings(t, socketFile), "ListenStream"); v == "" {
		t.Errorf("%s has no ListenStream", socketFile)
	}

	dir := t.TempDir()
	service, socket := installUnits(t, dir)
	if out, err := exec.Command("systemd-analyze", "verify", service, socket).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	help, _ := exec.Command("systemd-analyze", "security", "--help").CombinedOutput()
	if !strings.Contains(string(help), "--offline") {
		netnstest.Unavailable(t, "this systemd-analyze has no security --offline (systemd < 252): exposure not measured")
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", service).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=yes: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.5 {
		t.Errorf("exposure level %.1f, want <= 2.5:\n%s", level, out)
	} else {
		t.Logf("systemd-analyze security --offline=yes: exposure %.1f", level)
	}
}

// TestExampleSystemdSocketActivation runs the drop-in's command line under
// systemd-socket-activate listening on the socket unit's port, in a test
// namespace, and scrapes it through that socket.
func TestExampleSystemdSocketActivation(t *testing.T) {
	netnstest.Require(t, "systemd-socket-activate", "nfacct")
	var args []string
	for _, s := range unitSettings(t, dropInFile) {
		if s[0] == "ExecStart" && s[1] != "" {
			args = execArgs(t, s[1])
		}
	}
	port := lastSetting(unitSettings(t, socketFile), "ListenStream")
	ns := netnstest.New(t)
	ns.Run(t, "nfacct", "add", "socket")
	ns.Start(t, os.Stderr, "systemd-socket-activate", append([]string{"--listen=127.0.0.1:" + port, binary, "--netns=" + ns.Path()}, args...)...)
	body := waitMetrics(t, ns.HTTPClient(), "http://127.0.0.1:"+port+"/metrics")
	for _, want := range []string{`netfilter_nfacct_bytes_total{name="socket"} 0`, `netfilter_exporter_collector_success{collector="nfacct"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics through the activated socket lacks %s", want)
		}
	}
}

// The environment that makes the test binary exec its arguments under the
// seccomp filter it gives (see execSandboxed).
const (
	sandboxSyscallsEnv = "NFE_TEST_SECCOMP_ALLOW"    // allowed system call numbers, comma-separated
	sandboxFamiliesEnv = "NFE_TEST_SECCOMP_FAMILIES" // allowed socket families, comma-separated
)

// syscallFilter returns the system call numbers (of this architecture) that
// the unit's SystemCallFilter= lines allow, expanded by systemd-analyze as
// systemd expands them: @default always, then each line adds its calls, or
// removes them when it starts with ~.
func syscallFilter(t *testing.T, kv [][2]string) map[uint32]bool {
	t.Helper()
	numbers := syscallNumbers(t)
	groups := map[string][]string{}
	var expand func(name string) []string
	expand = func(name string) []string {
		if !strings.HasPrefix(name, "@") {
			return []string{name}
		}
		if g, ok := groups[name]; ok {
			return g
		}
		out, err := exec.Command("systemd-analyze", "syscall-filter", name).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", name, err)
		}
		var calls []string
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "    ") || strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue // the group's own name, its comment
			}
			calls = append(calls, expand(strings.TrimSpace(line))...)
		}
		if len(calls) == 0 {
			t.Fatalf("systemd-analyze knows no system calls in %s", name)
		}
		groups[name] = calls
		return calls
	}
	allowed := map[uint32]bool{}
	apply := func(names []string, allow bool) {
		for _, n := range names {
			for _, call := range expand(n) {
				if nr, ok := numbers[call]; ok {
					if allow {
						allowed[nr] = true
					} else {
						delete(allowed, nr)
					}
				}
			}
		}
	}
	apply([]string{"@default"}, true)
	for _, s := range kv {
		if s[0] != "SystemCallFilter" {
			continue
		}
		v := strings.TrimSpace(s[1])
		deny := strings.HasPrefix(v, "~")
		apply(strings.Fields(strings.TrimPrefix(v, "~")), !deny)
	}
	return allowed
}

// syscallNumbers maps system call names to their numbers on this
// architecture, read from golang.org/x/sys's table.
func syscallNumbers(t *testing.T) map[string]uint32 {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys").Output()
	if err != nil {
		t.Fatalf("locating golang.org/x/sys: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(dir)), "unix", "zsysnum_linux_"+runtime.GOARCH+".go")
	numbers := map[string]uint32{}
	for _, m := range regexp.MustCompile(`(?m)^\s*SYS_(\w+)\s*=\s*(\d+)`).FindAllStringSubmatch(string(mustRead(t, path)), -1) {
		n, _ := strconv.ParseUint(m[2], 10, 32)
		numbers[strings.ToLower(m[1])] = uint32(n)
	}
	if numbers["io_uring_setup"] == 0 {
		t.Fatalf("%s does not look like a system call table", path)
	}
	return numbers
}

// addressFamilies returns the socket families RestrictAddressFamilies= allows.
func addressFamilies(t *testing.T, kv [][2]string) []uint32 {
	t.Helper()
	known := map[string]uint32{"AF_UNIX": unix.AF_UNIX, "AF_INET": unix.AF_INET, "AF_INET6": unix.AF_INET6, "AF_NETLINK": unix.AF_NETLINK, "AF_PACKET": unix.AF_PACKET}
	var fams []uint32
	for _, f := range strings.Fields(lastSetting(kv, "RestrictAddressFamilies")) {
		n, ok := known[f]
		if !ok {
			t.Fatalf("RestrictAddressFamilies: %s unknown to the test", f)
		}
		fams = append(fams, n)
	}
	return fams
}

// TestExampleSystemdUnitSandbox runs the exporter the way the unit does,
// without systemd: a non-root user holding CAP_NET_ADMIN as its only,
// ambient, capability, no_new_privs, the unit's SystemCallFilter= (expanded
// by systemd-analyze, refused calls failing with EPERM as
// SystemCallErrorNumber= says) and RestrictAddressFamilies=, in a test
// namespace. Every collector must work, with io_uring.
func TestExampleSystemdUnitSandbox(t *testing.T) {
	netnstest.Require(t, "systemd-analyze", "setpriv", "nfacct")
	if runtime.GOARCH != "amd64" {
		netnstest.Unavailable(t, "the filter below checks the x86-64 audit architecture, not %s", runtime.GOARCH)
	}
	kv := unitSettings(t, unitFile)
	if v := lastSetting(kv, "SystemCallErrorNumber"); v != "EPERM" {
		t.Fatalf("SystemCallErrorNumber=%s: the test models EPERM", v)
	}
	var calls, fams []string
	for nr := range syscallFilter(t, kv) {
		calls = append(calls, strconv.FormatUint(uint64(nr), 10))
	}
	for _, f := range addressFamilies(t, kv) {
		fams = append(fams, strconv.FormatUint(uint64(f), 10))
	}

	// The test binary and the exporter where user 65532 can run them (the
	// wrapper runs as that user without CAP_DAC_OVERRIDE, so every directory
	// on the way must be open to it: t.TempDir's parent is not).
	dir, err := os.MkdirTemp("", "nfe-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper, bin := filepath.Join(dir, "sandbox"), filepath.Join(dir, exporterName)
	for src, dst := range map[string]string{os.Args[0]: wrapper, binary: bin} {
		if err := copyFile(src, dst); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ns := netnstest.New(t)
	ns.Run(t, "nfacct", "add", "sandbox")
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "setpriv", "--reuid=65532", "--regid=65532", "--clear-groups",
		"--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", "--no-new-privs",
		wrapper, bin, "--web.listen-address=127.0.0.1:9862")
	cmd.Env = append(os.Environ(), sandboxSyscallsEnv+"="+strings.Join(calls, ","), sandboxFamiliesEnv+"="+strings.Join(fams, ","))
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sandboxed exporter's log:\n%s", log)
		}
	})
	body := waitMetrics(t, ns.HTTPClient(), "http://127.0.0.1:9862/metrics")
	for _, want := range []string{
		`netfilter_exporter_collector_success{collector="nfacct"} 1`,
		`netfilter_exporter_collector_success{collector="conntrack"} 1`,
		`netfilter_exporter_collector_success{collector="conntrack_stats"} 1`,
		`netfilter_nfacct_bytes_total{name="sandbox"} 0`,
		`netfilter_conntrack_listener_info{method="io_uring"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("in the unit's sandbox, /metrics lacks %s", want)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", findPid(t, bin)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65532", "CapEff:\t0000000000001000", "CapAmb:\t0000000000001000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("the sandboxed exporter's status lacks %q:\n%s", want, status)
		}
	}
}

// execSandboxed installs the filter the environment describes and executes
// argv; it does not return. Called by TestMain in the test binary that
// TestExampleSystemdUnitSandbox starts.
func execSandboxed(argv []string) {
	runtime.LockOSThread()
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(2)
	}
	parse := func(env string) []uint32 {
		var out []uint32
		for _, s := range strings.Split(os.Getenv(env), ",") {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				fail(env, err)
			}
			out = append(out, uint32(n))
		}
		return out
	}
	calls, fams := parse(sandboxSyscallsEnv), parse(sandboxFamiliesEnv)
	const (
		offNr   = 0  // seccomp_data.nr
		offArch = 4  // seccomp_data.arch
		offArg0 = 16 // seccomp_data.args[0], low half on little-endian
	)
	ret := func(v uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: v} }
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	eq := func(v uint32) unix.SockFilter { // next instruction if equal, else skip it
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: v, Jt: 0, Jf: 1}
	}
	eperm := ret(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	prog := []unix.SockFilter{
		ld(offArch), eq(unix.AUDIT_ARCH_X86_64), unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: 1}, eperm,
		ld(offNr),
	}
	// socket(): only the allowed families, else EAFNOSUPPORT as systemd.
	prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_SOCKET, Jt: 0, Jf: uint8(2*len(fams) + 2)})
	prog = append(prog, ld(offArg0))
	for _, f := range fams {
		prog = append(prog, eq(f), ret(unix.SECCOMP_RET_ALLOW))
	}
	prog = append(prog, ret(unix.SECCOMP_RET_ERRNO|uint32(unix.EAFNOSUPPORT)))
	for _, nr := range calls {
		prog = append(prog, eq(nr), ret(unix.SECCOMP_RET_ALLOW))
	}
	prog = append(prog, eperm)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("PR_SET_NO_NEW_PRIVS", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		fail("seccomp", errno)
	}
	fail("exec", unix.Exec(argv[0], argv, os.Environ()))
}
