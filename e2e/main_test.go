package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
)

// exporterName is the command's name, of its binary and in its output.
const exporterName = "netfilter_exporter"

// binary is the exporter, built once for every test of the package.
var binary string

// TestMain builds the exporter once, with the race detector when the tests
// run with it (raceEnabled), and runs the tests from the repository's root,
// so that the files they read (examples/, README.md, scripts/) are named as
// the README names them.
func TestMain(m *testing.M) {
	if os.Getenv(denyIOURingEnv) == "1" {
		// Started by withoutIOURing: exec the command under the filter.
		execWithoutIOURing(os.Args[1:])
	}
	if os.Getenv(dropUIDEnv) != "" {
		// Started by TestNoNewPrivsCapabilityByUser.
		execAsUser(os.Args[1:])
	}
	if os.Getenv(sandboxSyscallsEnv) != "" {
		// Started by TestExampleSystemdUnitSandbox.
		execSandboxed(os.Args[1:])
	}
	os.Exit(run(m))
}

// run builds the exporter in a directory of its own and runs the tests from
// the repository's root; it returns their exit code.
func run(m *testing.M) int {
	if err := os.Chdir(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := os.Stat("main.go"); err != nil {
		fmt.Fprintf(os.Stderr, "the e2e tests run from the repository's root, the directory above e2e/: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "nfe-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, exporterName)
	args := []string{"build", "-trimpath", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the exporter (go %s .): %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	return m.Run()
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// exporter is a running exporter process.
type exporter struct {
	url    string
	cmd    *exec.Cmd
	stderr *lockedBuffer
	// terminated is set once the test has sent SIGTERM itself (terminate):
	// the cleanup then only waits for the exit. A second SIGTERM, sent
	// while the exporter is past its signal handling and exiting, would
	// kill it.
	terminated atomic.Bool
	// done is closed once the process has exited.
	done chan struct{}
}

// terminate sends SIGTERM to the exporter, once; the cleanup then waits
// for it to exit 0 without signalling it again.
func (e *exporter) terminate() error {
	e.terminated.Store(true)
	return e.cmd.Process.Signal(syscall.SIGTERM)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startExporter runs the exporter with args and waits until it serves
// /metrics. It is stopped with SIGTERM when the test ends and must exit 0.
func startExporter(t testing.TB, args ...string) *exporter {
	t.Helper()
	return startExporterCmd(t, func(args ...string) *exec.Cmd { return exec.Command(binary, args...) }, args...)
}

// startExporterCmd is startExporter with the command made by command, which
// gets the exporter's arguments.
func startExporterCmd(t testing.TB, command func(args ...string) *exec.Cmd, args ...string) *exporter {
	t.Helper()
	addr := freeAddr(t)
	e := &exporter{url: "http://" + addr, stderr: &lockedBuffer{}, done: make(chan struct{})}
	e.cmd = command(append([]string{"--web.listen-address=" + addr}, args...)...)
	e.cmd.Stderr = e.stderr
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		exited <- e.cmd.Wait()
		close(e.done)
	}()
	t.Cleanup(func() {
		if !e.terminated.Load() {
			_ = e.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exporter exited with %v after SIGTERM; log:\n%s", err, e.stderr)
			}
		case <-time.After(10 * time.Second):
			_ = e.cmd.Process.Kill()
			t.Errorf("exporter did not stop within 10s of SIGTERM; log:\n%s", e.stderr)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(e.url + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("exporter exited early: %v; log:\n%s", err, e.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter not serving after 10s: %v; log:\n%s", err, e.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrape fetches /metrics and returns the raw text and the parsed families.
func (e *exporter) scrape(t testing.TB) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return string(body), mfs
}

// carbon is a plaintext listener standing in for carbon-cache.
type carbon struct {
	l     net.Listener
	lines chan string
}

func newCarbon(t *testing.T) *carbon {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &carbon{l: l, lines: make(chan string, 100000)}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				s := bufio.NewScanner(conn)
				for s.Scan() {
					c.lines <- s.Text()
				}
			}()
		}
	}()
	return c
}

// waitFor returns the first line received within timeout for which match is
// true.
func (c *carbon) waitFor(t *testing.T, timeout time.Duration, match func(path string, value float64, ts int64) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line := <-c.lines:
			f := strings.Fields(line)
			if len(f) != 3 {
				t.Fatalf("carbon got a malformed line %q", line)
			}
			v, err1 := strconv.ParseFloat(f[1], 64)
			ts, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("carbon got a malformed line %q", line)
			}
			if match(f[0], v, ts) {
				return line
			}
		case <-deadline:
			t.Fatalf("no matching Graphite line within %v", timeout)
			return ""
		}
	}
}

// nfacctList is netnstest.NfacctList with values as Prometheus has them.
func nfacctList(t *testing.T, ns *netnstest.NS) map[string][2]float64 {
	t.Helper()
	m := make(map[string][2]float64)
	for name, v := range netnstest.NfacctList(t, ns) {
		m[name] = [2]float64{float64(v[0]), float64(v[1])}
	}
	return m
}

// promtoolCheck runs `promtool check metrics` on an exposition. The one
// complaint allowed is promlint's about "counter" in the names of the two
// nf_tables counter families, which issue 10 fixed as a contract: there the
// word names the nf_tables object, not the metric type.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch line {
		case "netfilter_nftables_counter_packets_total metric name should not include type 'counter'",
			"netfilter_nftables_counter_bytes_total metric name should not include type 'counter'":
		default:
			problems = append(problems, line)
		}
	}
	// Exit status 3 means lint problems only.
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 3 || len(problems) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, strings.Join(problems, "\n"))
	}
}

func TestExporterNfacctEndToEnd(t *testing.T) {
	netnstest.Require(t, "iptables", "nfacct", "promtool")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	ctx := context.Background()

	client, err := nfacct.Dial(&nfacct.Config{NetNS: b.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, o := range []nfacct.Object{
		{Name: "ipv4.app"},
		{Name: "dns"},
		{Name: "q", Flags: nfacct.FlagQuotaPackets, Quota: 3},
	} {
		if err := client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	b.Run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", "ipv4.app")
	b.Run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", "q")
	b.Run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "53", "-m", "nfacct", "--nfacct-name", "dns")
	b.ListenPacket(t, "udp4", "192.0.2.2:9000")
	b.ListenPacket(t, "udp4", "192.0.2.2:53")
	netnstest.SendUDP(t, a, "192.0.2.2:9000", 7, 100)
	netnstest.SendUDP(t, a, "192.0.2.2:53", 2, 30)

	c := newCarbon(t)
	e := startExporter(t, "--netns="+b.Path(), "--graphite.address="+c.l.Addr().String(), "--graphite.interval=300ms")

	// What the packets must have added: 20 bytes of IPv4 and 8 of UDP
	// header per datagram.
	want := map[string][2]float64{"ipv4.app": {7, 7 * 128}, "q": {7, 7 * 128}, "dns": {2, 2 * 58}}
	var body string
	var mfs map[string]*dto.MetricFamily
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, mfs = e.scrape(t)
		// Until the first read, the series may be missing.
		if v, ok := value(mfs, "netfilter_nfacct_packets_total", map[string]string{"name": "dns"}); (ok && v == 2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ref := nfacctList(t, b)
	for name, w := range want {
		pkts := mustValue(t, mfs, "netfilter_nfacct_packets_total", map[string]string{"name": name})
		bytes := mustValue(t, mfs, "netfilter_nfacct_bytes_total", map[string]string{"name": name})
		if pkts != w[0] || bytes != w[1] {
			t.Errorf("/metrics shows %s = %v packets %v bytes, want %v", name, pkts, bytes, w)
		}
		if ref[name] != w {
			t.Errorf("nfacct list shows %s = %v after the scrape, want %v: the counters must not be reset", name, ref[name], w)
		}
	}
	if v := mustValue(t, mfs, "netfilter_nfacct_quota_packets", map[string]string{"name": "q"}); v != 3 {
		t.Errorf("quota of q = %v, want 3", v)
	}
	if v := mustValue(t, mfs, "netfilter_nfacct_over_quota", map[string]string{"name": "q"}); v != 1 {
		t.Errorf("over_quota of q = %v, want 1", v)
	}
	if v := mustValue(t, mfs, "netfilter_exporter_collector_success", map[string]string{"collector": "nfacct"}); v != 1 {
		t.Errorf("collector success = %v, want 1", v)
	}
	promtoolCheck(t, body)

	// Every interval pushes the same kernel values, timestamped now.
	now := time.Now().Unix()
	seen := make(map[int64]bool)
	for len(seen) < 2 {
		c.waitFor(t, 5*time.Second, func(path string, v float64, ts int64) bool {
			if path == "netfilter.nfacct.ipv4.app.bytes" {
				if v != 7*128 {
					t.Fatalf("Graphite got %s %v, want %v", path, v, 7*128)
				}
				if ts < now-5 || ts > now+10 {
					t.Fatalf("Graphite timestamp %d is not around now (%d)", ts, now)
				}
				seen[ts] = true
				return true
			}
			return false
		})
		if len(seen) < 2 {
			// The next interval may still fall within the same second.
			time.Sleep(300 * time.Millisecond)
		}
	}
	c.waitFor(t, 5*time.Second, func(path string, v float64, _ int64) bool {
		return path == "netfilter.nfacct.ipv4.app.pkts" && v == 7
	})
}

// TestBadFlags runs the exporter with a bad value for every flag that takes
// a value, with --config.check and for a real start: both must refuse it the
// same way, with an exit code of 1 or 2, a message that names the flag, and
// no stack trace. It needs no privileges: settings are checked before
// anything touches the kernel.
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	twoDocs := filepath.Join(dir, "two.yml")
	huge := filepath.Join(dir, "huge.yml")
	badWeb := filepath.Join(dir, "web.yml")
	for name, data := range map[string]string{
		twoDocs: "ports: [22]\n---\nports: [80]\n",
		huge:    "# " + strings.Repeat("x", 2<<20) + "\n",
		badWeb:  "tls_server_config: {cert_file: /nonexistent}\n",
	} {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		args []string
		want string // in the message, besides the flag
	}{
		{[]string{"--web.telemetry-path=noslash"}, "must start with /"},
		{[]string{"--web.telemetry-path="}, "must start with /"},
		{[]string{"--web.telemetry-path=/-/ready"}, "/-/"},
		{[]string{"--web.max-requests=-1"}, "from 0"},
		{[]string{"--web.max-requests=99999999999999999999"}, "99999999999999999999"},
		{[]string{"--web.write-timeout=0s"}, "from 1ms"},
		{[]string{"--web.scrape-timeout=-5s"}, "from 1ms"},
		{[]string{"--web.listen-address=nonsense"}, "missing port"},
		{[]string{"--web.listen-address=:99999"}, "port"},
		{[]string{"--web.config.file=/nonexistent/web.yml"}, "no such file"},
		{[]string{"--web.config.file=" + badWeb}, "web.config.file"},
		{[]string{"--netns=/nonexistent/ns"}, "no such file"},
		{[]string{"--netns=/etc/hostname"}, "not a network namespace"},
		{[]string{"--netns=/proc/self/ns/mnt"}, "mount namespace"},
		{[]string{"--collector.timeout=0s"}, "from 1ms"},
		{[]string{"--collector.timeout=-1s"}, "from 1ms"},
		{[]string{"--collector.netlink-timeout=0s"}, "from 1ms"},
		{[]string{"--collector.netlink-timeout=1000h"}, "to 1h0m0s"},
		{[]string{"--config.file=/nonexistent.yml"}, "no such file"},
		{[]string{"--config.file=" + twoDocs}, "more than one YAML document"},
		{[]string{"--config.file=" + huge}, "larger than"},
		{[]string{"--conntrack.group-by=port"}, "port"},
		{[]string{"--conntrack.group-by="}, "group-by"},
		{[]string{"--conntrack.max-series=0"}, "from 1"},
		{[]string{"--conntrack.max-series=99999999999999999999"}, "99999999999999999999"},
		{[]string{"--conntrack.max-series=lots"}, "lots"},
		{[]string{"--conntrack.series-ttl=-1m"}, "from 0s"},
		{[]string{"--conntrack.receive-buffer=lots"}, "lots"},
		{[]string{"--conntrack.receive-buffer=2GiB"}, "1GiB"},
		{[]string{"--conntrack.receive-buffer-max=0"}, "from 1B"},
		{[]string{"--conntrack.receive-buffer=512MiB", "--conntrack.receive-buffer-max=64MiB"}, "below --conntrack.receive-buffer"},
		{[]string{"--conntrack.receive-method=epoll"}, "epoll"},
		{[]string{"--conntrack.poll-interval=often"}, "often"},
		{[]string{"--conntrack.poll-interval=1ns"}, "from 10ms"},
		{[]string{"--conntrack.poll-interval=-1s"}, "from 10ms"},
		{[]string{"--conntrack.dump-read-size=-1"}, "from 0"},
		{[]string{"--nfacct.name-labels=family,bad-label"}, "bad-label"},
		{[]string{"--nfacct.name-separator="}, "empty"},
		{[]string{"--nftables.rule-counters-limit=0"}, "1"},
		{[]string{"--nftables.rule-counters-limit=x"}, "x"},
		{[]string{"--graphite.address=bad"}, "missing port"},
		{[]string{"--graphite.address=:2003"}, "missing host"},
		{[]string{"--graphite.address=carbon:0"}, "port"},
		{[]string{"--graphite.interval=1ns"}, "from 100ms"},
		{[]string{"--graphite.interval=0s"}, "from 100ms"},
		{[]string{"--graphite.timeout=0s"}, "from 1ms"},
		{[]string{"--graphite.backlog-size=lots"}, "lots"},
		{[]string{"--graphite.resend-window=-1m"}, "from 0s"},
		{[]string{"--graphite.resend-window=1000h"}, "to 24h0m0s"},
		{[]string{"--graphite.resend-window-size=lots"}, "lots"},
		{[]string{"--graphite.resend-window-size=100"}, "100"},
		{[]string{"--graphite.mode=sometimes"}, "sometimes"},
		{[]string{"--log.level=loud"}, "log.level"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	}
	for _, tt := range tests {
		flag, _, _ := strings.Cut(strings.TrimPrefix(tt.args[len(tt.args)-1], "--"), "=")
		for _, check := range []bool{true, false} {
			args := append([]string{"--web.listen-address=" + freeAddr(t)}, tt.args...)
			if check {
				args = append(args, "--config.check")
			}
			t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || (exit.ExitCode() != 1 && exit.ExitCode() != 2) {
					t.Fatalf("exit: %v, want status 1 or 2; output:\n%s", err, out)
				}
				for _, want := range []string{flag, tt.want} {
					if !strings.Contains(string(out), want) {
						t.Errorf("output does not say %q:\n%s", want, out)
					}
				}
				if strings.Contains(string(out), "goroutine ") || strings.Contains(string(out), "panic") {
					t.Errorf("output has a stack trace:\n%s", out)
				}
			})
		}
	}
}

// TestWebConfigBasicAuth checks that --web.config.file (exporter-toolkit)
// protects /metrics and the top talkers' /top and /top.json alike.
func TestWebConfigBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(path, []byte("basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(binary, "--web.listen-address="+addr, "--web.config.file="+path,
		"--no-collector.nfacct", "--no-collector.conntrack", "--no-collector.conntrack_stats", "--no-collector.nftables")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	get := func(path, user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("/metrics", "", "") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, tt := range []struct {
		user, pass string
		want       int
	}{{"", "", http.StatusUnauthorized}, {"prometheus", "wrong", http.StatusUnauthorized}, {"prometheus", "s3cret", http.StatusOK}} {
		for _, path := range []string{"/metrics", "/top", "/top.json"} {
			if got := get(path, tt.user, tt.pass); got != tt.want {
				t.Errorf("GET %s as %q/%q: status %d, want %d", path, tt.user, tt.pass, got, tt.want)
			}
		}
	}
}

// TestWarnsWhenAccountingIsOff checks the start-up warning a user needs
// when DESTROY events would carry no counters.
func TestWarnsWhenAccountingIsOff(t *testing.T) {
	netnstest.Require(t, "sysctl")
	ns := netnstest.New(t)
	ns.Run(t, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=0", "net.netfilter.nf_conntrack_timestamp=0")
	e := startExporter(t, "--netns="+ns.Path(), "--no-collector.nfacct")
	for _, want := range []string{"sysctl=net.netfilter.nf_conntrack_acct", "sysctl=net.netfilter.nf_conntrack_timestamp", "counters will read 0",
		"sysctl=net.netfilter.nf_conntrack_events value=2", "live accounting counts them from table dumps"} {
		if !strings.Contains(e.stderr.String(), want) {
			t.Errorf("start-up log lacks %q:\n%s", want, e.stderr)
		}
	}
	// Without live accounting, flows without events are never counted.
	e = startExporter(t, "--netns="+ns.Path(), "--no-collector.nfacct", "--conntrack.poll-interval=0")
	if want := "never counted with --conntrack.poll-interval=0"; !strings.Contains(e.stderr.String(), want) {
		t.Errorf("start-up log lacks %q:\n%s", want, e.stderr)
	}
	// --conntrack.enable-accounting switches all three on in the namespace.
	startExporter(t, "--netns="+ns.Path(), "--no-collector.nfacct", "--conntrack.enable-accounting")
	for _, s := range []string{"net.netfilter.nf_conntrack_acct", "net.netfilter.nf_conntrack_timestamp", "net.netfilter.nf_conntrack_events"} {
		if v := strings.TrimSpace(ns.Run(t, "sysctl", "-n", s)); v != "1" {
			t.Errorf("%s = %s after --conntrack.enable-accounting, want 1", s, v)
		}
	}
}

// TestBinaryRaceMatchesTests checks that the exporter under test was built
// with the race detector exactly when the tests run with it, as its build
// settings (go version -m) say.
func TestBinaryRaceMatchesTests(t *testing.T) {
	out, err := exec.Command("go", "version", "-m", binary).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	built := strings.Contains(string(out), "\tbuild\t-race=true\n")
	if built != raceEnabled {
		t.Errorf("exporter built with -race: %v; the tests run with it: %v\n%s", built, raceEnabled, out)
	}
}
