package graphite

import (
	"strings"
	"testing"
)

func TestEscapeElement(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "web", "web"},
		{"allowed punctuation", "a_b-C9", "a_b-C9"},
		{"colon kept, as ulogd2 sends it", "web:8080", "web:8080"},
		{"ipv6", "2001:db8::1", "2001:db8::1"},
		{"kept punctuation", "#-:_", "#-:_"},
		{"punctuation a relay rewrites", "!$&+<>@^`~", "%21%24%26%2B%3C%3E%40%5E%60%7E"},
		{"dot", "10.0.0.1", "10%2E0%2E0%2E1"},
		{"space", "sp ace", "sp%20ace"},
		{"underscore stays", "sp_ace", "sp_ace"},
		{"slash and space", "10.0.0.0/8 lan", "10%2E0%2E0%2E0%2F8%20lan"},
		{"glob characters", "*?[]{}", "%2A%3F%5B%5D%7B%7D"},
		{"grammar symbols", `(),'"\|=`, "%28%29%2C%27%22%5C%7C%3D"},
		{"semicolon", "a;b", "a%3Bb"},
		{"escape byte itself", "100%", "100%25"},
		{"an escape in the name is escaped again", "sp%20ace", "sp%2520ace"},
		{"empty", "", "%"},
		{"lone escape byte is not empty", "%", "%25"},
		{"non-ASCII, per byte", "héllo", "h%C3%A9llo"},
		{"invalid UTF-8, per byte", "a\xff\xfeb", "a%FF%FEb"},
		{"control characters", "a\tb\nc\x00\x7f", "a%09b%0Ac%00%7F"},
		{"tilde escaped in a path", "~x", "%7Ex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapeElement(tt.in); got != tt.want {
				t.Errorf("escapeElement(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestEscapeElementKeepsApart checks the pairs that the '_' replacement of
// old merged into one element.
func TestEscapeElementKeepsApart(t *testing.T) {
	for _, pair := range [][2]string{
		{"sp ace", "sp_ace"},
		{"héllo", "h_llo"},
		{"web:8080", "web_8080"},
		{"", "_"},
		{"a.b", "a_b"},
		{"%", ""},
		{"%41", "A"},
	} {
		a, b := escapeElement(pair[0]), escapeElement(pair[1])
		if a == b {
			t.Errorf("escapeElement(%q) = escapeElement(%q) = %q", pair[0], pair[1], a)
		}
	}
}

func TestEscapeTagValue(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "web", "web"},
		{"dots and colons kept", "ipv4.http:80", "ipv4.http:80"},
		{"punctuation kept", "a=b,c(d)*", "a=b,c(d)*"},
		{"space", "sp ace", "sp%20ace"},
		{"underscore stays", "sp_ace", "sp_ace"},
		{"semicolon", "a;b", "a%3Bb"},
		{"leading tilde", "~x", "%7Ex"},
		{"inner tilde", "x~y", "x~y"},
		{"escape byte", "5%", "5%25"},
		{"non-ASCII", "héllo", "h%C3%A9llo"},
		{"control", "a\tb", "a%09b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapeTagValue(tt.in); got != tt.want {
				t.Errorf("escapeTagValue(%q) = %q, want %q", tt.in, got, tt.want)
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
		{"fw 1.net:filter", "fw%201.net:filter"},
		{"hôte.x", "h%C3%B4te.x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := sanitizePrefix(tt.in); got != tt.want {
				t.Errorf("sanitizePrefix(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestPathGrammarEveryByte checks every byte alone against the grammar.
func TestPathGrammarEveryByte(t *testing.T) {
	for c := range 256 {
		e := escapeElement(string([]byte{byte(c)}))
		if err := checkElementGrammar(e); err != nil {
			t.Errorf("byte %#02x: %q: %v", c, e, err)
		}
		if keepInPath[c] != (e == string([]byte{byte(c)})) {
			t.Errorf("byte %#02x: %q, kept = %v", c, e, keepInPath[c])
		}
	}
	if strings.ContainsAny(escapeElement("a b.c\n"), " .\n") {
		t.Error("separator left in an element")
	}
}

// escapeElement returns e as one Graphite path element: A-Z a-z 0-9 and
// # - : _ are kept as they are, every other byte is
// written %XX (two upper-case hex digits), and an empty element is "%".
// Two different elements never give the same result, and the result holds
// neither a dot nor whitespace.
func escapeElement(e string) string {
	return string(appendElement(make([]byte, 0, len(e)+1), e))
}

// escapeTagValue returns v as a Graphite tag value: every byte from '!' to
// '~' is kept but ';', '%' and a leading '~', which are written %XX, as are
// whitespace, control and non-ASCII bytes. Two different values never give
// the same result.
func escapeTagValue(v string) string {
	return string(appendTagValue(make([]byte, 0, len(v)), v))
}
