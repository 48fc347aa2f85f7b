package e2e

import (
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// netlinkDrops reads the Drops column of the socket in the conntrack
// DESTROY group from ns's /proc/net/netlink: the kernel's own count, read
// without the exporter.
func netlinkDrops(t *testing.T, ns *netnstest.NS) float64 {
	t.Helper()
	out := ns.Run(t, "cat", "/proc/net/netlink")
	_, drops, ok := ctload.ListenerSocket(out)
	if !ok {
		t.Fatalf("no socket in the conntrack DESTROY group:\n%s", out)
	}
	return float64(drops)
}

// burst creates n flows in ns and flushes them, then waits until the
// exporter has accounted for all n events, received or lost.
func burst(t *testing.T, e *exporter, ns *netnstest.NS, n int) map[string]*dto.MetricFamily {
	t.Helper()
	mfs := e.mustScrape(t)
	before := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
	lostBefore := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
	createAndFlush(t, ns, n)
	return waitAccounted(t, e, n, before, lostBefore)
}

// stoppedBurst is burst with the exporter stopped (SIGSTOP) while the n
// events are made: they all wait in its socket, and whatever does not fit
// in its receive buffer is lost, for certain.
func stoppedBurst(t *testing.T, e *exporter, ns *netnstest.NS, n int) map[string]*dto.MetricFamily {
	t.Helper()
	mfs := e.mustScrape(t)
	before := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
	lostBefore := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
	if err := e.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont := func() {
		if stopped {
			stopped = false
			if err := e.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer cont()
	createAndFlush(t, ns, n)
	cont()
	return waitAccounted(t, e, n, before, lostBefore)
}

// createAndFlush makes n conntrack entries in ns and flushes them: n
// DESTROY events.
func createAndFlush(t *testing.T, ns *netnstest.NS, n int) {
	t.Helper()
	if err := ctload.Create(ns.FD(), n); err != nil {
		t.Fatal(err)
	}
	if err := ctload.Flush(ns.FD()); err != nil {
		t.Fatal(err)
	}
}

// waitAccounted waits until the exporter has accounted for n more events,
// received or lost, than before and lostBefore, and returns that scrape.
func waitAccounted(t *testing.T, e *exporter, n int, before, lostBefore float64) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mfs := e.mustScrape(t)
		events := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
		lost := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
		// Scraped in the middle of a drain, a scrape must stay consistent:
		// every event it counts is already in the flow series (none yet
		// before the first event).
		if flows, _ := sum(mfs, "netfilter_conntrack_flows_total", nil); events > flows {
			t.Fatalf("a scrape during the drain counts %v events but only %v flows", events, flows)
		}
		if events-before+lost-lostBefore >= float64(n) {
			return mfs
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s the exporter accounts for %v received and %v lost of %d events", events-before, lost-lostBefore, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *exporter) mustScrape(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	_, mfs := e.scrape(t)
	return mfs
}

// TestExporterConntrackOverrun overruns a tiny receive buffer on purpose:
// the lost counter must equal what the kernel dropped, every other event
// must be counted, and the listener must go on.
func TestExporterConntrackOverrun(t *testing.T) {
	netnstest.Require(t)
	for _, method := range []string{"io_uring", "recvmmsg"} {
		t.Run(method, func(t *testing.T) {
			ns := netnstest.New(t)
			e := startExporter(t, "--netns="+ns.Path(), "--no-collector.nfacct", "--conntrack.receive-method="+method,
				"--conntrack.receive-buffer=32KiB", "--conntrack.receive-buffer-max=32KiB")
			const n = 50000
			mfs := burst(t, e, ns, n)
			if v := mustValue(t, mfs, "netfilter_conntrack_listener_info", map[string]string{"method": method}); v != 1 {
				t.Errorf("listener_info{method=%q} = %v, want 1", method, v)
			}
			events := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
			lost := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
			if lost == 0 {
				t.Fatalf("a 32 KiB buffer did not overrun with %d events; the test proves nothing", n)
			}
			if drops := netlinkDrops(t, ns); lost != drops {
				t.Errorf("events_lost_total = %v, the kernel's Drops column says %v", lost, drops)
			}
			if events+lost != n {
				t.Errorf("received %v + lost %v = %v, want exactly %d", events, lost, events+lost, n)
			}
			if flows := mustSum(t, mfs, "netfilter_conntrack_flows_total", nil); flows != events {
				t.Errorf("flows_total sums to %v, want every received event (%v)", flows, events)
			}
			t.Logf("%d events: %v received, %v lost", n, events, lost)

			// The listener goes on after overruns.
			if up := mustValue(t, mfs, "netfilter_conntrack_listener_up", nil); up != 1 {
				t.Errorf("listener_up = %v after the overrun", up)
			}
			mfs = burst(t, e, ns, 10)
			events2 := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
			lost2 := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
			if events2+lost2 != n+10 {
				t.Errorf("after a second burst of 10: received %v + lost %v, want %d", events2, lost2, n+10)
			}
		})
	}
}

// TestExporterConntrackReliable shows that reliable mode loses nothing
// with the same tiny buffer: the kernel delivers dropped events again.
func TestExporterConntrackReliable(t *testing.T) {
	netnstest.Require(t)
	for _, method := range []string{"io_uring", "recvmmsg"} {
		t.Run(method, func(t *testing.T) {
			ns := netnstest.New(t)
			e := startExporter(t, "--netns="+ns.Path(), "--no-collector.nfacct", "--conntrack.reliable", "--conntrack.receive-method="+method,
				"--conntrack.receive-buffer=32KiB", "--conntrack.receive-buffer-max=32KiB")
			const n = 20000
			mfs := burst(t, e, ns, n)
			events := mustValue(t, mfs, "netfilter_conntrack_destroy_events_total", nil)
			lost := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
			failures := mustValue(t, mfs, "netfilter_conntrack_event_delivery_failures_total", nil)
			flows := mustSum(t, mfs, "netfilter_conntrack_flows_total", nil)
			if events != n || lost != 0 || flows != n {
				t.Errorf("reliable mode: received %v, lost %v, flows %v; want %d, 0, %d", events, lost, flows, n, n)
			}
			if failures == 0 {
				t.Errorf("no delivery failed with a 32 KiB buffer; the test proves nothing")
			}
			t.Logf("%d events, %v deliveries failed and were repeated by the kernel", n, failures)
		})
	}
}

// TestExporterConntrackBufferGrows checks that drops make the receive
// buffer grow, up to its maximum: the exporter is stopped while a burst
// far larger than its 32 KiB buffer is queued, so that events are lost for
// certain.
func TestExporterConntrackBufferGrows(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t)
	e := startExporter(t, "--netns="+ns.Path(), "--no-collector.nfacct",
		"--conntrack.receive-buffer=32KiB", "--conntrack.receive-buffer-max=16MiB")
	mfs := e.mustScrape(t)
	before := mustValue(t, mfs, "netfilter_conntrack_receive_buffer_bytes", nil)
	if g := mustValue(t, mfs, "netfilter_conntrack_receive_buffer_growths_total", nil); g != 0 {
		t.Fatalf("%v buffer growths before any event", g)
	}
	const n = 50000
	mfs = stoppedBurst(t, e, ns, n)
	after := mustValue(t, mfs, "netfilter_conntrack_receive_buffer_bytes", nil)
	growths := mustValue(t, mfs, "netfilter_conntrack_receive_buffer_growths_total", nil)
	lost := mustValue(t, mfs, "netfilter_conntrack_events_lost_total", nil)
	if lost == 0 {
		t.Fatalf("no event lost with %d events queued on a 32 KiB buffer; the test proves nothing", n)
	}
	if growths == 0 || after <= before {
		t.Errorf("%v events lost but the buffer did not grow: %v -> %v bytes, %v growths", lost, before, after, growths)
	}
	// The kernel reports twice what SO_RCVBUFFORCE set.
	if after > 2*16<<20 {
		t.Errorf("buffer grew to %v bytes, past twice the 16 MiB maximum", after)
	}
	t.Logf("buffer %v -> %v bytes after %v growths, %v lost", before, after, growths, lost)
}
