package config

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// reloadStart is the file the exporter starts with in the reload tests.
const reloadStart = `networks:
  lan: [10.0.0.0/8]
  dmz: [192.168.0.0/16]
ports: [22, 80]
`

// startedWith writes content to a file, starts as the exporter does with
// --config.file naming it and args, and returns its flags, the settings and
// the file's path.
func startedWith(t *testing.T, content string, args ...string) (*Flags, *Settings, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netfilter_exporter.yml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	app := kingpin.New("test", "")
	f := AddFlags(app)
	if _, err := app.Parse(append([]string{"--config.file=" + path}, args...)); err != nil {
		t.Fatal(err)
	}
	s, err := f.Settings(nil)
	if err != nil {
		t.Fatal(err)
	}
	return f, s, path
}

func TestReload(t *testing.T) {
	addr := netip.MustParseAddr
	tests := []struct {
		name    string
		args    []string
		file    string // what the file holds at the reload; "" removes it
		wantErr error  // nil: the reload succeeds
		// errText is a part of the error, when one is wanted.
		errText string
		check   func(t *testing.T, s *Settings)
	}{
		{
			name: "network renamed",
			file: "networks:\n  office: [10.0.0.0/8]\n  dmz: [192.168.0.0/16]\nports: [22, 80]\n",
			check: func(t *testing.T, s *Settings) {
				if got := s.Conntrack.Flow.Networks.Lookup(addr("10.0.0.1")); got != "office" {
					t.Errorf("10.0.0.1 reads as %q, want office", got)
				}
			},
		},
		{
			name: "port added",
			file: "networks:\n  lan: [10.0.0.0/8]\n  dmz: [192.168.0.0/16]\nports: [22, 80, 443]\n",
			check: func(t *testing.T, s *Settings) {
				if got := s.Conntrack.Flow.Ports.Lookup(6, 443); got != "443" {
					t.Errorf("443 reads as %q, want 443", got)
				}
			},
		},
		{
			name: "filter added, in the kernel",
			file: reloadStart + "filters:\n  deny:\n    - src: [192.168.0.0/16]\n",
			check: func(t *testing.T, s *Settings) {
				if accept, deny := s.Conntrack.Flow.Filter.Rules(); accept != 0 || deny != 1 {
					t.Errorf("filter rules %d accept, %d deny; want 0, 1", accept, deny)
				}
				if s.Conntrack.EventFilter == nil || s.Conntrack.Flow.EventFilter != s.Conntrack.EventFilter {
					t.Errorf("event filter %v (flow %v), want the deny rule compiled, the same for both", s.Conntrack.EventFilter, s.Conntrack.Flow.EventFilter)
				}
			},
		},
		{
			name: "filter added, in userspace",
			args: []string{"--conntrack.filter-place=userspace"},
			file: reloadStart + "filters:\n  deny:\n    - src: [192.168.0.0/16]\n",
			check: func(t *testing.T, s *Settings) {
				if s.Conntrack.EventFilter != nil || s.Conntrack.Flow.EventFilter != nil {
					t.Errorf("event filter %v with --conntrack.filter-place=userspace, want none", s.Conntrack.EventFilter)
				}
			},
		},
		{
			name: "flags not read again",
			args: []string{"--conntrack.series-ttl=1h", "--conntrack.max-series=50"},
			file: reloadStart + "conntrack:\n  max_series: 99\n",
			check: func(t *testing.T, s *Settings) {
				if s.Conntrack.Flow.SeriesTTL != time.Hour || s.Conntrack.Flow.MaxSeries != 50 {
					t.Errorf("series TTL %v, max series %d; want the flags' 1h and 50", s.Conntrack.Flow.SeriesTTL, s.Conntrack.Flow.MaxSeries)
				}
			},
		},
		{
			name: "group_by given by the flag",
			args: []string{"--conntrack.group-by=src_net"},
			file: reloadStart + "conntrack:\n  group_by: [dst_net]\n",
		},
		{
			name:    "bad CIDR",
			file:    "networks:\n  lan: [10.0.0.0/33]\n",
			wantErr: errCIDR, errText: `netfilter_exporter.yml: networks.lan[0]: "10.0.0.0/33" is not a CIDR`,
		},
		{
			name:    "bad YAML",
			file:    "networks: [\n",
			wantErr: errYAML, errText: "netfilter_exporter.yml: invalid YAML: line 1",
		},
		{
			name:    "group_by changed",
			file:    reloadStart + "conntrack:\n  group_by: [src_net, dport]\n",
			wantErr: errRestart, errText: "conntrack.group_by [src_net, dport] differs from the running [family, proto, dport]",
		},
		{
			name:    "max_series changed",
			file:    reloadStart + "conntrack:\n  max_series: 10\n",
			wantErr: errRestart, errText: "conntrack.max_series 10 differs from the running 4096",
		},
		{
			name:    "file removed",
			wantErr: fs.ErrNotExist, errText: "--config.file: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, running, path := startedWith(t, reloadStart, tt.args...)
			before := running.Conntrack.Flow
			if tt.file == "" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := f.Reload(running)
			if c := running.Conntrack.Flow; c.Networks != before.Networks || c.Ports != before.Ports || c.Filter != before.Filter || c.EventFilter != before.EventFilter {
				t.Errorf("Reload changed the running settings")
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) || !strings.HasPrefix(err.Error(), "--config.file: ") {
					t.Fatalf("Reload: %v, want %v, starting with --config.file and saying %q", err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			if s.Web != running.Web || s.Collectors != running.Collectors || s.NetNS != running.NetNS {
				t.Errorf("Reload changed settings that only flags set")
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestReloader(t *testing.T) {
	f, running, path := startedWith(t, reloadStart)
	var applied []*Settings
	applyErr := error(nil)
	apply := func(s *Settings) error {
		if applyErr != nil {
			return applyErr
		}
		applied = append(applied, s)
		return nil
	}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	r, err := NewReloader(f, running, apply, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return clock }
	metrics := func() (ok, at float64) {
		return testutil.ToFloat64(r.successful), testutil.ToFloat64(r.timestamp)
	}
	if ok, at := metrics(); ok != 1 || at < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("at start: successful %v, timestamp %v; want 1 and the start's time", ok, at)
	}
	if n, err := testutil.GatherAndCount(reg, reloadMetricPrefix+"last_reload_successful", reloadMetricPrefix+"last_reload_success_timestamp_seconds"); err != nil || n != 2 {
		t.Errorf("registered families: %d, %v; want both", n, err)
	}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	steps := []struct {
		name    string
		file    string
		applyEr error
		wantErr bool
		wantOK  float64
		wantAt  time.Time
		// wantLog is a part of the log line the step writes.
		wantLog string
	}{
		{name: "good file", file: "networks:\n  office: [10.0.0.0/8]\n", wantOK: 1, wantAt: time.Unix(1_800_000_000, 0), wantLog: "configuration reloaded"},
		{name: "bad file", file: "networks:\n  office: [10.0.0.0/33]\n", wantErr: true, wantOK: 0, wantAt: time.Unix(1_800_000_000, 0), wantLog: `"--config.file: ` + path + `: networks.office[0]: \"10.0.0.0/33\" is not a CIDR"`},
		{name: "refused by apply", file: "networks:\n  lab: [10.0.0.0/8]\n", applyEr: errors.New("the kernel refused the event filter"), wantErr: true, wantOK: 0, wantAt: time.Unix(1_800_000_000, 0), wantLog: "the kernel refused the event filter"},
		{name: "good again", file: "networks:\n  lab: [10.0.0.0/8]\n", wantOK: 1, wantAt: time.Unix(1_800_000_060, 0), wantLog: "configuration reloaded"},
	}
	for i, st := range steps {
		clock = time.Unix(1_800_000_000+int64(i)*20, 0)
		write(st.file)
		applyErr = st.applyEr
		logs.Reset()
		n := len(applied)
		err := r.Reload()
		if (err != nil) != st.wantErr {
			t.Errorf("%s: Reload = %v, want an error: %v", st.name, err, st.wantErr)
		}
		if ok, at := metrics(); ok != st.wantOK || at != float64(st.wantAt.Unix()) {
			t.Errorf("%s: successful %v, timestamp %v; want %v, %v", st.name, ok, at, st.wantOK, st.wantAt.Unix())
		}
		if !strings.Contains(logs.String(), st.wantLog) || !strings.Contains(logs.String(), "file="+path) {
			t.Errorf("%s: logged %q, want the file named and %q", st.name, logs.String(), st.wantLog)
		}
		if st.wantErr && (len(applied) != n || r.running != running && r.running != applied[len(applied)-1]) {
			t.Errorf("%s: a refused reload changed what runs", st.name)
		}
	}
	if len(applied) != 2 {
		t.Fatalf("apply was given %d settings, want the 2 good files'", len(applied))
	}
	if got := applied[1].Conntrack.Flow.Networks.Lookup(netip.MustParseAddr("10.0.0.1")); got != "lab" || r.running != applied[1] {
		t.Errorf("after the last reload 10.0.0.1 reads as %q, want lab, and the Reloader runs what it applied", got)
	}
}
