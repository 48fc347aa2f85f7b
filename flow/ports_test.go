package flow

import (
	"errors"
	"testing"
)

func TestPortsLookup(t *testing.T) {
	p, err := NewPorts([]PortRange{{22, 22}, {443, 443}, {8000, 8100}, {0, 0}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		ports *Ports
		proto uint8
		port  uint16
		want  string
	}{
		{"listed", p, ProtoTCP, 22, "22"},
		{"listed udp", p, ProtoUDP, 443, "443"},
		{"range start", p, ProtoTCP, 8000, "8000-8100"},
		{"range inside", p, ProtoSCTP, 8050, "8000-8100"},
		{"range end", p, ProtoDCCP, 8100, "8000-8100"},
		{"after range", p, ProtoTCP, 8101, "other"},
		{"unlisted", p, ProtoUDPLite, 80, "other"},
		{"zero listed", p, ProtoTCP, 0, "0"},
		{"no ports icmp", p, ProtoICMP, 22, "none"},
		{"no ports gre", p, ProtoGRE, 0, "none"},
		{"no list", nil, ProtoTCP, 65535, "65535"},
		{"no list no ports", nil, ProtoICMPv6, 0, "none"},
		{"no list unknown proto", nil, 250, 80, "none"},
	}
	for _, tt := range tests {
		if got := tt.ports.Lookup(tt.proto, tt.port); got != tt.want {
			t.Errorf("%s: Lookup(%d, %d) = %q, want %q", tt.name, tt.proto, tt.port, got, tt.want)
		}
	}
}

func TestNewPortsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []PortRange
		want error
	}{
		{"lo above hi", []PortRange{{100, 99}}, errPortRange},
		{"duplicate", []PortRange{{80, 80}, {80, 80}}, errPortOverlap},
		{"port in range", []PortRange{{8000, 8100}, {8080, 8080}}, errPortOverlap},
		{"ranges overlap", []PortRange{{1, 10}, {10, 20}}, errPortOverlap},
		{"whole range", []PortRange{{0, 65535}}, nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		if _, err := NewPorts(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: NewPorts() error = %v, want %v", tt.name, err, tt.want)
		}
	}
}
