package graphite

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"cumulative", Cumulative, false},
		{"delta", Delta, false},
		{"", 0, true},
		{"Delta", 0, true},
		{"rate", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errMode) {
					t.Fatalf("ParseMode(%q) error = %v, want %v", tt.in, err, errMode)
				}
				if !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Errorf("error %q does not name the bad value", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseMode(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestParseBacklogSize(t *testing.T) {
	tests := []struct {
		in         string
		wantPoints int
		wantBytes  int
		wantErr    bool
	}{
		{"100000", 100000, 0, false},
		{" 42 ", 42, 0, false},
		{"64MiB", 0, 64 << 20, false},
		{"512KB", 0, 512 << 10, false},
		{"512KiB", 0, 512 << 10, false},
		{"1GiB", 0, 1 << 30, false},
		{"1.5MiB", 0, 3 << 19, false},
		{"100B", 0, 100, false},
		{"0", 0, 0, true},
		{"0B", 0, 0, true},
		{"-5", 0, 0, true},
		{"-1MiB", 0, 0, true},
		{"", 0, 0, true},
		{"lots", 0, 0, true},
		{"12XB", 0, 0, true},
		{"99999999999999999999999", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, b, err := ParseBacklogSize(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errBacklogSize) {
					t.Fatalf("ParseBacklogSize(%q) error = %v, want %v", tt.in, err, errBacklogSize)
				}
				if !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Errorf("error %q does not name the bad value", err)
				}
				return
			}
			if err != nil || p != tt.wantPoints || b != tt.wantBytes {
				t.Fatalf("ParseBacklogSize(%q) = %d, %d, %v; want %d, %d", tt.in, p, b, err, tt.wantPoints, tt.wantBytes)
			}
		})
	}
}

func TestParseWindowSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"64MiB", 64 << 20, false},
		{" 512KB ", 512 << 10, false},
		{"0", 0, false},
		{"0B", 0, false},
		{"100", 0, true}, // a size needs a unit
		{"-1MiB", 0, true},
		{"", 0, true},
		{"lots", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseWindowSize(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errWindow) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Fatalf("ParseWindowSize(%q) error = %v, want %v naming the value", tt.in, err, errWindow)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseWindowSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

type nilSource struct{}

func (nilSource) Snapshot(context.Context) *tree.Snapshot { return nil }

func validConfig() Config {
	return Config{
		Address:       "127.0.0.1:2003",
		Prefix:        "netfilter",
		Interval:      time.Second,
		Timeout:       time.Second,
		BacklogPoints: 100,
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		src    Source
		want   error
	}{
		{"valid", func(*Config) {}, nilSource{}, nil},
		{"valid with bytes only", func(c *Config) { c.BacklogPoints, c.BacklogBytes = 0, 1<<20 }, nilSource{}, nil},
		{"valid IPv6 host", func(c *Config) { c.Address = "[::1]:2003" }, nilSource{}, nil},
		{"valid host name", func(c *Config) { c.Address = "carbon.example.org:2003" }, nilSource{}, nil},
		{"no port", func(c *Config) { c.Address = "carbon" }, nilSource{}, errAddress},
		{"empty address", func(c *Config) { c.Address = "" }, nilSource{}, errAddress},
		{"no host", func(c *Config) { c.Address = ":2003" }, nilSource{}, errAddress},
		{"bad port", func(c *Config) { c.Address = "carbon:plaintext" }, nilSource{}, errAddress},
		{"port out of range", func(c *Config) { c.Address = "carbon:70000" }, nilSource{}, errAddress},
		{"zero interval", func(c *Config) { c.Interval = 0 }, nilSource{}, errInterval},
		{"negative interval", func(c *Config) { c.Interval = -time.Second }, nilSource{}, errInterval},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, nilSource{}, errTimeout},
		{"no backlog limit", func(c *Config) { c.BacklogPoints = 0 }, nilSource{}, errBacklog},
		{"negative backlog points", func(c *Config) { c.BacklogPoints = -1; c.BacklogBytes = 10 }, nilSource{}, errBacklog},
		{"negative backlog bytes", func(c *Config) { c.BacklogBytes = -1 }, nilSource{}, errBacklog},
		{"bad mode", func(c *Config) { c.Mode = 7 }, nilSource{}, errMode},
		{"valid resend window", func(c *Config) { c.ResendWindow, c.ResendWindowBytes = time.Minute, 1<<20 }, nilSource{}, nil},
		{"negative resend window", func(c *Config) { c.ResendWindow = -time.Second }, nilSource{}, errWindow},
		{"negative resend window size", func(c *Config) { c.ResendWindowBytes = -1 }, nilSource{}, errWindow},
		{"no source", func(*Config) {}, nil, errSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			w, err := New(cfg, tt.src, nil)
			if tt.want == nil {
				if err != nil || w == nil {
					t.Fatalf("New = %v, %v; want a writer", w, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || w != nil {
				t.Fatalf("New = %v, %v; want error %v", w, err, tt.want)
			}
		})
	}
}

func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := validConfig()
	cfg.Registerer = reg
	if _, err := New(cfg, nilSource{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nilSource{}, nil); !errors.Is(err, errRegister) {
		t.Fatalf("second New error = %v, want %v", err, errRegister)
	}
	checkMetricsGolden(t, reg, "testdata/metrics.prom")
}
