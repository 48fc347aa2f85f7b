package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
)

// TestExporterGraphiteFinalPushOnSIGTERM runs the exporter with a Graphite
// interval of an hour, so that only its first snapshot is pushed while it
// runs. Traffic then moves an nfacct counter, and SIGTERM must deliver a
// last snapshot holding the new value, within --graphite.timeout, before
// the exporter exits: a restart loses nothing.
func TestExporterGraphiteFinalPushOnSIGTERM(t *testing.T) {
	netnstest.Require(t, "iptables", "nfacct")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	client, err := nfacct.Dial(&nfacct.Config{NetNS: b.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Create(context.Background(), nfacct.Object{Name: "final"}); err != nil {
		t.Fatal(err)
	}
	b.Run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9000", "-m", "nfacct", "--nfacct-name", "final")
	b.ListenPacket(t, "udp4", "192.0.2.2:9000")

	c := newCarbon(t)
	e := startExporter(t, "--netns="+b.Path(), "--no-collector.conntrack",
		"--graphite.address="+c.l.Addr().String(), "--graphite.interval=1h", "--graphite.timeout=5s")
	c.waitFor(t, 10*time.Second, func(path string, v float64, _ int64) bool {
		return path == "netfilter.nfacct.final.bytes" && v == 0
	})

	// 3 datagrams of 100 bytes: 128 bytes each with the IPv4 and UDP headers.
	netnstest.SendUDP(t, a, "192.0.2.2:9000", 3, 100)
	if got := nfacctList(t, b)["final"]; got != [2]float64{3, 3 * 128} {
		t.Fatalf("nfacct list shows final = %v, want 3 packets of 128 bytes", got)
	}
	signalled := time.Now()
	if err := e.terminate(); err != nil {
		t.Fatal(err)
	}
	line := c.waitFor(t, 10*time.Second, func(path string, v float64, ts int64) bool {
		return path == "netfilter.nfacct.final.bytes" && v == 3*128
	})
	if ts, err := strconv.ParseInt(strings.Fields(line)[2], 10, 64); err != nil || ts < signalled.Unix() {
		t.Errorf("final line %q: want the time of a snapshot taken after SIGTERM (%d)", line, signalled.Unix())
	}
	if d := time.Since(signalled); d > 5*time.Second {
		t.Errorf("the final snapshot arrived %v after SIGTERM, beyond --graphite.timeout=5s", d)
	}
	if log := e.stderr.String(); strings.Contains(log, "did not acknowledge") || strings.Contains(log, "no final snapshot") {
		t.Errorf("the exporter reports a loss on a healthy link:\n%s", log)
	}
}
