package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// fencedBlocks returns the fenced code blocks of a Markdown file whose info
// string is lang, without their fences.
func fencedBlocks(t *testing.T, path, lang string) []string {
	t.Helper()
	var blocks []string
	var cur strings.Builder
	in := false
	for _, l := range strings.Split(string(mustRead(t, path)), "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```"+lang:
			in = true
			cur.Reset()
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks = append(blocks, cur.String())
		case in:
			cur.WriteString(l + "\n")
		}
	}
	return blocks
}

// TestExampleRecordingRules checks the recording rules that
// docs/scale-out.md federates, and runs their unit tests.
func TestExampleRecordingRules(t *testing.T) {
	netnstest.RequireTools(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "examples/recording_rules.yml"},
		{"test", "rules", "examples/recording_rules_test.yml"},
	} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestDocsScaleOut checks every configuration of docs/scale-out.md as
// written: the Prometheus ones (named by their first line) with promtool,
// beside the recording rules they load, and the carbon-c-relay one with
// the relay's own test mode, which must route the exporter's paths.
func TestDocsScaleOut(t *testing.T) {
	netnstest.RequireTools(t, "promtool", "carbon-c-relay")
	const page = "docs/scale-out.md"
	dir := t.TempDir()
	rules := mustRead(t, "examples/recording_rules.yml")
	if err := os.WriteFile(filepath.Join(dir, "recording_rules.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	yamls := fencedBlocks(t, page, "yaml")
	if len(yamls) < 3 {
		t.Fatalf("%s has %d yaml blocks, want the agent, site and central configurations", page, len(yamls))
	}
	for i, y := range yamls {
		file := filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"check", "config"}
		if strings.Contains(strings.SplitN(y, "\n", 2)[0], "agent") {
			args = append(args, "--agent")
		}
		out, err := exec.Command("promtool", append(args, file)...).CombinedOutput()
		if err != nil {
			t.Errorf("%s, yaml block %d: promtool %s: %v\n%s\n%s", page, i+1, strings.Join(args, " "), err, out, y)
		}
		if strings.Contains(y, "rule_files:") && !strings.Contains(string(out), "SUCCESS: 5 rules found") {
			t.Errorf("%s, yaml block %d: the recording rules are not loaded:\n%s", page, i+1, out)
		}
	}
	relays := fencedBlocks(t, page, "conf")
	if len(relays) != 1 {
		t.Fatalf("%s has %d conf blocks, want the carbon-c-relay configuration", page, len(relays))
	}
	file := filepath.Join(dir, "relay.conf")
	if err := os.WriteFile(file, []byte(relays[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("carbon-c-relay", "-t", "-f", file)
	cmd.Stdin = strings.NewReader("netfilter.fw1.nfacct.web.bytes 1 1700000000\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-> netfilter.fw1.nfacct.web.bytes") || !strings.Contains(string(out), "carbon_ch(graphite)") {
		t.Errorf("carbon-c-relay -t does not route the exporter's paths to the caches: %v\n%s", err, out)
	}
	// The relay as the page runs it passes escaped paths unchanged; by
	// default it rewrites '%', so the page must give -c.
	m := regexp.MustCompile(`-c '([^']+)'`).FindStringSubmatch(strings.SplitN(relays[0], "\n", 2)[0])
	if m == nil {
		t.Fatalf("%s: the relay's command line gives no -c:\n%s", page, relays[0])
	}
	const escaped = "netfilter.fw1.nfacct.sp%20ace.bytes"
	if got := relayOnce(t, dir, m[1], escaped); got != escaped {
		t.Errorf("carbon-c-relay -c %q passes %s as %q", m[1], escaped, got)
	}
	if got := relayOnce(t, dir, "", escaped); got == escaped {
		t.Logf("carbon-c-relay without -c now passes %s unchanged: the -c of %s may no longer be needed", escaped, page)
	}
}

// relayOnce runs a real carbon-c-relay (with -c chars unless empty) that
// forwards to a listener of the test, sends it one point on path and
// returns the path the listener receives.
func relayOnce(t *testing.T, dir, chars, path string) string {
	t.Helper()
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	conf := filepath.Join(dir, "forward.conf")
	if err := os.WriteFile(conf, []byte("cluster sink\n    forward\n        "+sink.Addr().String()+"\n    ;\nmatch *\n    send to sink\n    stop\n    ;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	args := []string{"-f", conf, "-p", port, "-s"}
	if chars != "" {
		args = append(args, "-c", chars)
	}
	relay := exec.Command("carbon-c-relay", args...)
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = relay.Process.Kill(); _ = relay.Wait() }()
	var c net.Conn
	eventually(t, 10*time.Second, func() string {
		if c, err = net.Dial("tcp", "127.0.0.1:"+port); err != nil {
			return "carbon-c-relay does not listen: " + err.Error()
		}
		return ""
	})
	fmt.Fprintf(c, "%s 1 1700000000\n", path)
	c.Close()
	if err := sink.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	in, err := sink.Accept()
	if err != nil {
		t.Fatalf("carbon-c-relay forwarded nothing: %v", err)
	}
	defer in.Close()
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil {
		t.Fatalf("reading what carbon-c-relay forwarded: %v", err)
	}
	return strings.Fields(line)[0]
}
