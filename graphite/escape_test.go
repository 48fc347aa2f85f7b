package graphite

import (
	"testing"
)

func TestEscapeElement(t *testing.T) {
	tests := []struct {
		name string
		in   string
		esc  byte
		want string
	}{
		{"plain", "web", '_', "web"},
		{"allowed punctuation", "a_b-C9", '_', "a_b-C9"},
		{"dot", "10.0.0.1", '_', "10_0_0_1"},
		{"colon", "tcp:80", '_', "tcp_80"},
		{"ipv6", "2001:db8::1", '_', "2001_db8__1"},
		{"slash and space", "10.0.0.0/8 lan", '_', "10_0_0_0_8_lan"},
		{"glob characters", "*?[]{}()", '_', "________"},
		{"semicolon and equals", "a;b=c", '_', "a_b_c"},
		{"empty", "", '_', "_"},
		{"non-ASCII, one escape per character", "zürich", '_', "z_rich"},
		{"emoji", "a😀b", '_', "a_b"},
		{"invalid UTF-8, one escape per byte", "a\xff\xfeb", '_', "a__b"},
		{"control characters", "a\tb\nc", '_', "a_b_c"},
		{"other escape char", "a.b", '-', "a-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EscapeElement(tt.in, tt.esc); got != tt.want {
				t.Errorf("EscapeElement(%q, %q) = %q, want %q", tt.in, tt.esc, got, tt.want)
			}
		})
	}
}

func TestSanitizePrefix(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"netfilter", "netfilter"},
		{"servers.fw1.netfilter", "servers.fw1.netfilter"},
		{".netfilter.", "netfilter"},
		{"a..b", "a.b"},
		{"...", ""},
		{"fw 1.net:filter", "fw_1.net_filter"},
		{"hôte.x", "h_te.x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := SanitizePrefix(tt.in, '_'); got != tt.want {
				t.Errorf("SanitizePrefix(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
