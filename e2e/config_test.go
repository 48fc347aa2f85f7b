package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runRefused runs the exporter with args, as a start and with
// --config.check: both must exit 1 or 2 with a message holding every want,
// no stack trace, within limit and at a peak RSS of at most maxRSS KiB.
// It needs no privileges: the settings are checked before anything
// touches the kernel.
func runRefused(t *testing.T, args []string, limit time.Duration, maxRSS int64, want ...string) {
	t.Helper()
	if raceEnabled {
		// The race detector's own memory and slowness.
		limit, maxRSS = 5*limit, 3*maxRSS
	}
	for _, check := range []bool{true, false} {
		args := append([]string{"--web.listen-address=" + freeAddr(t)}, args...)
		if check {
			args = append(args, "--config.check")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, args...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || (exit.ExitCode() != 1 && exit.ExitCode() != 2) {
			t.Fatalf("%s: exit: %v after %v, want status 1 or 2; output:\n%.2000s", strings.Join(args[1:], " "), err, took, out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s: output does not say %q:\n%.2000s", strings.Join(args[1:], " "), w, out)
			}
		}
		if strings.Contains(string(out), "goroutine ") || strings.Contains(string(out), "panic") {
			t.Errorf("output has a stack trace:\n%.2000s", out)
		}
		// An upper bound of the exporter's peak: Linux carries the peak
		// RSS of the forking test process over exec into this one.
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		t.Logf("%s: %v, peak RSS %d KiB", strings.Join(args[1:], " "), took.Round(time.Millisecond), rss)
		if took > limit {
			t.Errorf("%s: refused after %v, want within %v", strings.Join(args[1:], " "), took, limit)
		}
		if rss > maxRSS {
			t.Errorf("%s: peak RSS %d KiB, want at most %d", strings.Join(args[1:], " "), rss, maxRSS)
		}
	}
}

// TestSpecialFilesRefused: every file the exporter is given must be a
// regular file: a named pipe (which blocked the start forever, before
// any listener), a directory or /dev/zero is refused at once with its path
// and what it is, by --config.check and a start alike.
func TestSpecialFilesRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock.yml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sub := filepath.Join(dir, "dir.yml")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "cert.yml")
	if err := os.WriteFile(cert, []byte("tls_server_config: {cert_file: fifo.yml, key_file: fifo.yml}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		fifo:        "a named pipe (FIFO)",
		sub:         "a directory",
		sock:        "a socket",
		"/dev/zero": "a character device",
	}
	for _, flag := range []string{"--config.file", "--web.config.file"} {
		for path, what := range files {
			t.Run(flag+"="+filepath.Base(path), func(t *testing.T) {
				runRefused(t, []string{flag + "=" + path}, time.Second, 100<<10, flag, path+": not a regular file: it is "+what)
			})
		}
	}
	t.Run("--web.config.file with a named pipe as cert_file", func(t *testing.T) {
		runRefused(t, []string{"--web.config.file=" + cert}, time.Second, 100<<10, "--web.config.file", "tls_server_config.cert_file: "+fifo+": not a regular file: it is a named pipe (FIFO)")
	})
	t.Run("--netns=fifo", func(t *testing.T) {
		runRefused(t, []string{"--netns=" + fifo}, time.Second, 100<<10, "--netns", "not a network namespace")
	})
}

// TestConfigBombsRefused: issue 24's merge-key bomb (820 bytes; it ran
// for minutes) and alias amplification (162 KB; 1.07 GB of RSS) are
// refused within a second at under 100 MB of peak RSS, naming the alias
// that crosses the limit; an error about a 1 MB value stays under 1 KB;
// anchors, aliases and merges of a normal file still work.
func TestConfigBombsRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// As the python one-liners make them.
	var merge strings.Builder
	merge.WriteString("networks:\n  <<:\n    - &l0 {")
	for i := range 10 {
		fmt.Fprintf(&merge, "%sn%d: [10.%d.0.0/16]", map[bool]string{true: ", "}[i > 0], i, i)
	}
	merge.WriteString("}\n")
	for l := 1; l < 10; l++ {
		fmt.Fprintf(&merge, "    - &l%d {<<: [%s]}\n", l, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", l-1), 10), ", "))
	}
	var alias strings.Builder
	alias.WriteString("filters:\n  deny:\n    - &r {src: [")
	for i := range 10000 {
		fmt.Fprintf(&alias, "%s10.%d.%d.0/24", map[bool]string{true: ", "}[i > 0], (i>>8)&255, i&255)
	}
	alias.WriteString("]}\n" + strings.Repeat("    - *r\n", 1000))
	merge9 := write("merge9.yml", merge.String())
	filtMid := write("filt_mid.yml", alias.String())
	webMerge9 := write("web_merge9.yml", strings.Replace(merge.String(), "networks:", "basic_auth_users:", 1))
	if len(merge.String()) != 820 || len(alias.String()) != 162158 {
		t.Fatalf("the bombs are %d and %d bytes, want the issue's 820 and 162158", len(merge.String()), len(alias.String()))
	}
	const limit = "expands the file past the limit of 1048576 nodes"
	t.Run("merge bomb", func(t *testing.T) {
		runRefused(t, []string{"--config.file=" + merge9}, time.Second, 100<<10, merge9+": line 8: alias *l4 "+limit)
	})
	t.Run("alias amplification", func(t *testing.T) {
		runRefused(t, []string{"--config.file=" + filtMid}, time.Second, 100<<10, filtMid+": line 107: alias *r "+limit, "its anchor &r, line 3")
	})
	t.Run("merge bomb as --web.config.file", func(t *testing.T) {
		runRefused(t, []string{"--web.config.file=" + webMerge9}, time.Second, 100<<10, "--web.config.file: "+webMerge9+": line 8: alias *l4 "+limit)
	})
	t.Run("a 1 MB value", func(t *testing.T) {
		path := write("long.yml", "ports: ["+strings.Repeat("1", 1_040_000)+"]\n")
		out, _ := exec.Command(binary, "--config.file="+path, "--config.check").CombinedOutput()
		if len(out) >= 1024 || !strings.Contains(string(out), `…" (1040000 bytes) is not a port`) {
			t.Errorf("output of %d bytes, want under 1024 with the value cut: %.2000s", len(out), out)
		}
	})
	t.Run("anchors and merges", func(t *testing.T) {
		path := write("anchors.yml", "networks:\n  lan: &lan [192.168.0.0/16]\nfilters:\n  accept:\n    - &web {dst: *lan, dport: [80, 443]}\n    - <<: *web\n      dport: [8080]\n    - <<: [{proto: [udp]}, *web]\n")
		out, err := exec.Command(binary, "--config.file="+path, "--config.check").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "configuration OK") {
			t.Errorf("--config.check: %v\n%s", err, out)
		}
	})
}
