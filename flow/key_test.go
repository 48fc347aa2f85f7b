package flow

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseGroupBy(t *testing.T) {
	tests := []struct {
		in      string
		want    []Key
		wantErr error
		errText string
	}{
		{in: DefaultGroupBy, want: []Key{KeyFamily, KeyProto, KeyDPort}},
		{in: "src_net, dst_net ,nat", want: []Key{KeySrcNet, KeyDstNet, KeyNAT}},
		{in: "family,proto,sport,dport,src,dst,src_net,dst_net,zone,mark,nat", want: keys},
		{in: "dport", want: []Key{KeyDPort}},
		{in: "", wantErr: errEmptyGroupBy},
		{in: "  ", wantErr: errEmptyGroupBy},
		{in: "family,port", wantErr: errUnknownKey, errText: `"port": valid keys are family, proto, sport, dport, src, dst, src_net, dst_net, zone, mark, nat`},
		{in: "family,,proto", wantErr: errUnknownKey, errText: `""`},
		{in: "Family", wantErr: errUnknownKey},
		{in: "family,proto,family", wantErr: errDuplicateKey, errText: `"family"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseGroupBy(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseGroupBy(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not contain %q", err, tt.errText)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseGroupBy(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseProto(t *testing.T) {
	tests := []struct {
		in      string
		want    uint8
		wantErr bool
	}{
		{in: "tcp", want: 6},
		{in: "UDP", want: 17},
		{in: "icmpv6", want: 58},
		{in: "udplite", want: 136},
		{in: "sctp", want: 132},
		{in: "dccp", want: 33},
		{in: "gre", want: 47},
		{in: "icmp", want: 1},
		{in: "0", want: 0},
		{in: "255", want: 255},
		{in: "256", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "esp", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseProto(tt.in)
		if tt.wantErr {
			if !errors.Is(err, errProto) {
				t.Errorf("ParseProto(%q) error = %v, want %v", tt.in, err, errProto)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseProto(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
		if ProtoName(got) != strings.ToLower(tt.in) {
			t.Errorf("ProtoName(%d) = %q, want %q", got, ProtoName(got), strings.ToLower(tt.in))
		}
	}
}
