package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/collector"
)

func TestSettingsNflog(t *testing.T) {
	s, err := settings(t)
	if err != nil {
		t.Fatal(err)
	}
	if s.Collectors.Nflog || len(s.Nflog.Groups) != 0 || s.Nflog.ReceiveBuffer != 64<<20 || s.Nflog.ReceiveBufferMax != 1<<30 ||
		s.Nflog.MaxSeries != collector.DefaultNflogMaxSeries || s.Nflog.GroupBy != nil {
		t.Errorf("defaults: %v %+v", s.Collectors.Nflog, s.Nflog)
	}
	s, err = settings(t, "--nflog.group=5", "--nflog.group", "0", "--nflog.group-by=family,dport", "--nflog.max-series=10",
		"--collector.disable-defaults")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Collectors.Nflog || !slices.Equal(s.Nflog.Groups, []uint16{5, 0}) || !slices.Equal(s.Nflog.GroupBy, []string{"family", "dport"}) || s.Nflog.MaxSeries != 10 {
		t.Errorf("given: %v %+v", s.Collectors.Nflog, s.Nflog)
	}
	for _, args := range [][]string{
		{"--nflog.group=65536"},
		{"--nflog.group=5", "--nflog.group=5"},
		{"--nflog.max-series=0"},
		{"--nflog.receive-buffer=2MiB", "--nflog.receive-buffer-max=1MiB"},
	} {
		if _, err := settings(t, args...); !errors.Is(err, errFlag) {
			t.Errorf("%q: error %v, want one wrapping errFlag", args, err)
		}
	}
	s, err = settings(t, "--nflog.conntrack-invalid")
	if err != nil || !s.Collectors.Nflog || !s.Nflog.ConntrackInvalid || len(s.Nflog.Groups) != 0 {
		t.Errorf("--nflog.conntrack-invalid: %v %+v", err, s.Nflog)
	}
	// The file's networks name the src_net and dst_net keys, as for
	// conntrack flows.
	file := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(file, []byte("networks:\n  lan: [192.0.2.0/24]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = settings(t, "--nflog.group=5", "--nflog.group-by=src_net,dst_net", "--config.file="+file)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Nflog.GroupBy, []string{"src_net", "dst_net"}) || s.Nflog.Networks == nil ||
		s.Nflog.Networks.Lookup(netip.MustParseAddr("192.0.2.7")) != "lan" || s.Nflog.Networks != s.Conntrack.Flow.Networks {
		t.Errorf("src_net,dst_net with a networks file: %+v", s.Nflog)
	}
	if _, err := settings(t, "--nflog.group-by=prefix"); err == nil {
		t.Error("--nflog.group-by=prefix accepted")
	}
}
