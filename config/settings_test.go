package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/netfilter-exporter/netfilter_exporter/flow"
)

// settings parses args as the exporter's flags and returns the settings.
func settings(t *testing.T, args ...string) (*Settings, error) {
	t.Helper()
	app := kingpin.New("test", "")
	f := AddFlags(app)
	if _, err := app.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return f.Settings(nil)
}

func TestSettingsFlagsWinOverTheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(file, []byte("conntrack:\n  group_by: [src_net, dport]\n  max_series: 77\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := func(s string) []flow.Key {
		k, err := flow.ParseGroupBy(s)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	tests := []struct {
		name      string
		args      []string
		groupBy   []flow.Key
		maxSeries int
	}{
		{"defaults", nil, keys(flow.DefaultGroupBy), DefaultMaxSeries},
		{"file", []string{"--config.file=" + file}, keys("src_net,dport"), 77},
		{"flags win", []string{"--config.file=" + file, "--conntrack.group-by=proto", "--conntrack.max-series=9"}, keys("proto"), 9},
		{"one flag wins", []string{"--config.file=" + file, "--conntrack.max-series=9"}, keys("src_net,dport"), 9},
		{"flags alone", []string{"--conntrack.group-by=family,nat", "--conntrack.max-series=5"}, keys("family,nat"), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := settings(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Conntrack.Flow.GroupBy, tt.groupBy) || s.Conntrack.Flow.MaxSeries != tt.maxSeries {
				t.Errorf("group by %q, max series %d; want %q, %d", s.Conntrack.Flow.GroupBy, s.Conntrack.Flow.MaxSeries, tt.groupBy, tt.maxSeries)
			}
		})
	}
}

func TestSettingsPollInterval(t *testing.T) {
	tests := []struct {
		arg      string
		live     bool
		interval time.Duration
	}{
		{"auto", true, 0},
		{"0", false, 0},
		{"0s", false, 0},
		{"30s", true, 30 * time.Second},
		{"10ms", true, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		s, err := settings(t, "--conntrack.poll-interval="+tt.arg)
		if err != nil {
			t.Errorf("%s: %v", tt.arg, err)
			continue
		}
		if s.Conntrack.Flow.Live != tt.live || s.Conntrack.PollInterval != tt.interval {
			t.Errorf("%s: live %v every %v, want %v every %v", tt.arg, s.Conntrack.Flow.Live, s.Conntrack.PollInterval, tt.live, tt.interval)
		}
	}
}

func TestSettingsDefaults(t *testing.T) {
	s, err := settings(t)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Collectors
	if !c.Nfacct || !c.Nftables || !c.Conntrack || !c.ConntrackStats || c.Timeout != 10*time.Second || c.NetlinkTimeout != 5*time.Second {
		t.Errorf("collectors %+v", c)
	}
	if s.Conntrack.ReceiveBuffer != 64<<20 || s.Conntrack.ReceiveBufferMax != 1<<30 || !s.Conntrack.NoENOBUFS || !s.Conntrack.Flow.Live {
		t.Errorf("conntrack %+v", s.Conntrack)
	}
	if g := s.Graphite; g.Address != "" || g.Interval != time.Minute || g.BacklogPoints != 0 || g.BacklogBytes != 256<<20 ||
		g.ResendWindow != 5*time.Minute || g.ResendWindowBytes != 32<<20 {
		t.Errorf("graphite %+v", s.Graphite)
	}
	if s.Web.TelemetryPath != "/metrics" || s.Web.MaxRequests != 40 {
		t.Errorf("web %+v", s.Web)
	}
}

func TestSettingsDisableDefaults(t *testing.T) {
	tests := []struct {
		args []string
		want Collectors
	}{
		{nil, Collectors{Nfacct: true, Nftables: true, Conntrack: true, ConntrackStats: true}},
		{[]string{"--no-collector.conntrack"}, Collectors{Nfacct: true, Nftables: true, ConntrackStats: true}},
		{[]string{"--collector.disable-defaults"}, Collectors{}},
		{[]string{"--collector.disable-defaults", "--collector.nfacct"}, Collectors{Nfacct: true}},
		{[]string{"--collector.nfacct", "--collector.disable-defaults", "--collector.conntrack_stats"}, Collectors{Nfacct: true, ConntrackStats: true}},
		{[]string{"--collector.disable-defaults", "--no-collector.nfacct", "--collector.nftables"}, Collectors{Nftables: true}},
	}
	for _, tt := range tests {
		s, err := settings(t, tt.args...)
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		got := s.Collectors
		got.Timeout, got.NetlinkTimeout = 0, 0
		if got != tt.want {
			t.Errorf("%q: collectors %+v, want %+v", tt.args, got, tt.want)
		}
	}
}

func TestSettingsErrorsAreFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--collector.timeout=0s"},
		{"--conntrack.max-series=-3"},
		{"--graphite.interval=1ns"},
		{"--web.max-requests=many"},
	} {
		_, err := settings(t, args...)
		if !errors.Is(err, errFlag) {
			t.Errorf("%q: error %v, want one wrapping errFlag", args, err)
		}
	}
}

// TestSettingsEscapeCharDeprecated checks that --graphite.escape-char, which
// no longer does anything, still starts the exporter, whatever its value,
// with a warning; without it there is none.
func TestSettingsEscapeCharDeprecated(t *testing.T) {
	for _, v := range []string{"_", "-", "ab", "."} {
		s, err := settings(t, "--graphite.escape-char="+v)
		if err != nil {
			t.Fatalf("--graphite.escape-char=%s: %v", v, err)
		}
		if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "--graphite.escape-char is deprecated") {
			t.Errorf("--graphite.escape-char=%s: warnings %q", v, s.Warnings)
		}
	}
	s, err := settings(t)
	if err != nil || len(s.Warnings) != 0 {
		t.Errorf("no flag: %v, warnings %q", err, s.Warnings)
	}
}
