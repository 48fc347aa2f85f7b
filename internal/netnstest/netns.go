package netnstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// RequiredEnv is the environment variable that turns skips into failures.
const RequiredEnv = "NETFILTER_EXPORTER_KERNEL_TESTS"

var counter atomic.Int64

// Require is the first call of a kernel test: one that needs root, to make
// network namespaces and netfilter state, and the tools it names (and ip)
// on PATH. It skips t when it cannot run (see Unavailable) and always under
// go test -short, which runs the root-free tier only (make unit).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		if Required() {
			t.Fatalf("%s=required and -short contradict each other: -short leaves the kernel tests out", RequiredEnv)
		}
		t.Skip("a kernel test: not run with -short (make unit)")
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "this test needs root: it creates network namespaces and netfilter state")
		return
	}
	RequireTools(t, append([]string{"ip"}, tools...)...)
}

// RequireTools skips t unless every tool in tools is on PATH (see
// Unavailable). It asks for no root: a test that only runs, say, promtool
// on a file calls it alone and runs for any user, under -short too.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "this test needs %q on PATH (make deps installs it): %v", tool, err)
			return
		}
	}
}

// Required reports whether RequiredEnv is "required": tests must then run,
// and fail where they cannot.
func Required() bool {
	return os.Getenv(RequiredEnv) == "required"
}

// Unavailable stops t because something it needs is missing (root, a tool,
// a kernel feature): it skips t, or fails it when Required, so that CI can
// never pass by skipping.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf(format+" (and %s=required)", append(args, RequiredEnv)...)
	}
	t.Skipf(format, args...)
}

// NS is a network namespace made for one test and deleted when it ends.
type NS struct {
	// Name is the namespace's name under /var/run/netns.
	Name string
	h    *netns.Handle
}

// New makes a fresh network namespace with its loopback up. Call Require
// first.
func New(t testing.TB) *NS {
	t.Helper()
	name := fmt.Sprintf("nfe-%d-%d", os.Getpid(), counter.Add(1))
	mustRun(t, "ip", "netns", "add", name)
	n := &NS{Name: name}
	t.Cleanup(func() {
		if n.h != nil {
			n.h.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.Open("/var/run/netns/" + name)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", name, err)
	}
	n.h = h
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Path returns the namespace's file, as --netns takes it.
func (n *NS) Path() string {
	return "/var/run/netns/" + n.Name
}

// FD returns an open descriptor of the namespace, valid until the test ends.
func (n *NS) FD() int {
	return n.h.FD()
}

// Run runs a command inside the namespace and returns its standard output;
// it fails the test if the command fails.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Try(name, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// Try runs a command inside the namespace and returns its standard output,
// or an error holding its combined output.
func (n *NS) Try(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("in namespace %s: %s %s: %w: %s%s", n.Name, name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn
// creates belong to the namespace for their whole life, whatever thread uses
// them later.
func (n *NS) Do(fn func() error) error {
	return n.h.Do(fn)
}

// ListenPacket opens a packet socket inside the namespace.
func (n *NS) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s %s in %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Listen opens a stream listener inside the namespace.
func (n *NS) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s %s in %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Dial connects from inside the namespace.
func (n *NS) Dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = net.Dial(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("dialing %s %s from %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Link joins a and b with a veth pair and gives each end an address; addrA
// and addrB are CIDRs such as "192.0.2.1/24" or "2001:db8::1/64". It
// returns the interface names in a and in b.
func Link(t testing.TB, a, b *NS, addrA, addrB string) (ifA, ifB string) {
	t.Helper()
	id := counter.Add(1)
	ifA, ifB = fmt.Sprintf("va%d", id), fmt.Sprintf("vb%d", id)
	a.Run(t, "ip", "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.Name)
	for _, end := range []struct {
		ns   *NS
		ifc  string
		addr string
	}{{a, ifA, addrA}, {b, ifB, addrB}} {
		if end.addr != "" {
			args := []string{"addr", "add", end.addr, "dev", end.ifc}
			if strings.Contains(end.addr, ":") {
				// Skip duplicate address detection so the address is usable at once.
				args = []string{"-6", "addr", "add", end.addr, "dev", end.ifc, "nodad"}
			}
			end.ns.Run(t, "ip", args...)
		}
		end.ns.Run(t, "ip", "link", "set", end.ifc, "up")
	}
	return ifA, ifB
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// HTTPClient returns an HTTP client whose connections are made inside the
// namespace, to reach servers listening on its loopback.
func (n *NS) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := n.Do(func() (err error) {
					var d net.Dialer
					c, err = d.DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

// Start starts a long-running command inside the namespace, with its output
// going to log, and stops it with SIGTERM (then SIGKILL) when the test ends.
func (n *NS) Start(t testing.TB, log io.Writer, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s in %s: %v", name, n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}
