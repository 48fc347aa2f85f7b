package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestExporterFollowsNetns deletes the namespace the exporter watches and
// makes a new one at the same path: the collectors fail while it is gone,
// saying so, and work again in the new one, the conntrack listener included.
// It needs root.
func TestExporterFollowsNetns(t *testing.T) {
	netnstest.Require(t, "nfacct", "sysctl")
	name := fmt.Sprintf("nfe-follow-%d", os.Getpid())
	path := "/var/run/netns/" + name
	ipNetns := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip netns %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ipNetns("add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	e := startExporter(t, "--netns="+path, "--conntrack.poll-interval=0", "--log.level=debug")
	success := func(mfs map[string]*dto.MetricFamily, c string) float64 {
		v, ok := value(mfs, "netfilter_exporter_collector_success", map[string]string{"collector": c})
		if !ok {
			t.Fatalf("no collector_success for %s", c)
		}
		return v
	}
	collectors := []string{"nfacct", "nftables", "conntrack", "conntrack_stats"}
	all := func(want float64) func(map[string]*dto.MetricFamily) bool {
		return func(mfs map[string]*dto.MetricFamily) bool {
			for _, c := range collectors {
				if success(mfs, c) != want {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, e, 10*time.Second, "the collectors do not work in the namespace", all(1))

	ipNetns("del", name)
	waitUntil(t, e, 10*time.Second, "the collectors still succeed after the namespace was deleted", all(0))
	for _, want := range []string{"removed from its path", path} {
		if !strings.Contains(e.stderr.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, e.stderr)
		}
	}

	ipNetns("add", name)
	mfs := waitUntil(t, e, 10*time.Second, "the collectors did not reopen in the new namespace", all(1))
	if !strings.Contains(e.stderr.String(), "appeared at its path again") {
		t.Errorf("log does not say the namespace came back:\n%s", e.stderr)
	}
	// The listener joined the new namespace's DESTROY group: flows made
	// and flushed there are counted.
	before, _ := value(mfs, "netfilter_conntrack_destroy_events_total", nil)
	h, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_events=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	if err := ctload.Create(h.FD(), 100); err != nil {
		t.Fatal(err)
	}
	if err := ctload.Flush(h.FD()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, e, 10*time.Second, "the DESTROY events of the new namespace were not counted", func(mfs map[string]*dto.MetricFamily) bool {
		v, _ := value(mfs, "netfilter_conntrack_destroy_events_total", nil)
		return v >= before+100
	})
}
