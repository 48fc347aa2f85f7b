package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
)

// TestGraphitePathsKeepEverySeriesApart creates nfacct objects whose names
// the old escaping ('_' for every byte outside [A-Za-z0-9_-]) merged two by
// two, counts a different number of packets with each, and checks what a
// real carbon-cache wrote to whisper: one series per object, each with its
// own value, in dotted paths and in tagged series. web:8080 keeps the path
// ulogd2 sends (TestUlogd2SideBySide sends it with ulogd2 too), and an
// object named objects leaves the exporter's own object count alone.
func TestGraphitePathsKeepEverySeriesApart(t *testing.T) {
	netnstest.Require(t, "iptables", "carbon-cache", "whisper-fetch")
	ns := netnstest.New(t)
	dir := t.TempDir()
	client, err := nfacct.Dial(&nfacct.Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Each object counts i+1 datagrams, and the path carbon stores it
	// under, below netfilter/nfacct, and its tag value.
	objects := []struct{ name, path, tag string }{
		{"sp ace", "sp%20ace", "sp%20ace"},
		{"sp_ace", "sp_ace", "sp_ace"},
		{"a..b", "a/%/b", "a..b"},
		{"a._.b", "a/_/b", "a._.b"},
		{"héllo", "h%C3%A9llo", "h%C3%A9llo"},
		{"h_llo", "h_llo", "h_llo"},
		{"web:8080", "web:8080", "web:8080"},
		{"web_8080", "web_8080", "web_8080"},
		{"objects", "objects", "objects"},
	}
	for i, o := range objects {
		if err := client.Create(context.Background(), nfacct.Object{Name: o.name}); err != nil {
			t.Fatalf("creating %q: %v", o.name, err)
		}
		ns.Run(t, "iptables", "-A", "OUTPUT", "-p", "udp", "--dport", fmt.Sprint(9100+i), "-m", "nfacct", "--nfacct-name", o.name)
	}
	startCarbon(t, ns, dir)
	logs, err := os.Create(filepath.Join(dir, "exporters.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("exporters:\n%s", b)
		}
	})
	common := []string{"--no-collector.conntrack", "--no-collector.conntrack_stats", "--no-collector.nftables",
		"--graphite.address=127.0.0.1:2003", "--graphite.interval=1s"}
	ns.Start(t, logs, binary, append([]string{"--web.listen-address=127.0.0.1:9862"}, common...)...)
	ns.Start(t, logs, binary, append([]string{"--web.listen-address=127.0.0.1:9863", "--graphite.tagged", "--graphite.prefix=tagged"}, common...)...)
	waitListening(t, ns, "127.0.0.1:9862")
	waitListening(t, ns, "127.0.0.1:9863")
	for i := range objects {
		ns.ListenPacket(t, "udp4", fmt.Sprintf("127.0.0.1:%d", 9100+i))
		netnstest.SendUDP(t, ns, fmt.Sprintf("127.0.0.1:%d", 9100+i), i+1, 100)
	}

	want := map[string]float64{
		// The exporter's own count, where no object name reaches.
		filepath.Join(dir, "whisper/netfilter/exporter/nfacct/objects.wsp"): float64(len(objects)),
	}
	for i, o := range objects {
		want[filepath.Join(dir, "whisper/netfilter/nfacct", o.path, "pkts.wsp")] = float64(i + 1)
		want[taggedWhisperPath(dir, "tagged.nfacct_packets_total;object="+o.tag)] = float64(i + 1)
	}
	for path, v := range want {
		eventually(t, 30*time.Second, func() string {
			if got, ok := whisperLast(path); !ok || got != v {
				return fmt.Sprintf("whisper %s holds %v (found %v), want %v", path, got, ok, v)
			}
			return ""
		})
	}
	// Nothing else under nfacct: a pkts and a bytes series per object.
	var files []string
	root := filepath.Join(dir, "whisper/netfilter/nfacct")
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			r, _ := filepath.Rel(root, p)
			files = append(files, r)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2*len(objects) {
		t.Errorf("whisper has %d series under netfilter/nfacct, want %d: %q", len(files), 2*len(objects), files)
	}
	// No collision left for the backstop to drop, in either mode.
	for _, addr := range []string{"127.0.0.1:9862", "127.0.0.1:9863"} {
		resp, err := ns.HTTPClient().Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "\nnetfilter_exporter_graphite_path_collisions 0\n") {
			t.Errorf("%s: netfilter_exporter_graphite_path_collisions is not 0", addr)
		}
	}
}
