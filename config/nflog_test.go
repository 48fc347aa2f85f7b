package config

import (
	"errors"
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
	if _, err := settings(t, "--nflog.group-by=prefix"); err == nil {
		t.Error("--nflog.group-by=prefix accepted")
	}
}
