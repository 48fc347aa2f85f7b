package graphite

import (
	"strings"
	"unicode/utf8"
)

// DefaultEscapeChar is the character that replaces, by default, every
// character Graphite cannot take in a path element.
const DefaultEscapeChar byte = '_'

// ValidPathChar reports whether c may appear unescaped in a Graphite path
// element: an ASCII letter, a digit, '_' or '-'.
func ValidPathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '_' || c == '-':
		return true
	}
	return false
}

// appendElement appends e to dst with every character outside [A-Za-z0-9_-]
// replaced by esc. A multi-byte UTF-8 character, and every byte of an invalid
// UTF-8 sequence, becomes a single esc. An empty element becomes esc, so it
// still makes a level of its own.
func appendElement(dst []byte, e string, esc byte) []byte {
	if e == "" {
		return append(dst, esc)
	}
	for i := 0; i < len(e); {
		c := e[i]
		if c < utf8.RuneSelf {
			if ValidPathChar(c) {
				dst = append(dst, c)
			} else {
				dst = append(dst, esc)
			}
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(e[i:])
		dst = append(dst, esc)
		i += size
	}
	return dst
}

// EscapeElement returns e as one Graphite path element: every character
// outside [A-Za-z0-9_-] is replaced by esc, and an empty element becomes esc.
func EscapeElement(e string, esc byte) string {
	return string(appendElement(make([]byte, 0, len(e)+1), e, esc))
}

// SanitizePrefix returns prefix made safe for Graphite. The prefix may hold
// several levels separated by dots; each level is escaped as EscapeElement
// does, and empty levels (leading, trailing or doubled dots) are dropped. The
// result is empty when prefix has no level at all.
func SanitizePrefix(prefix string, esc byte) string {
	var b []byte
	for elem := range strings.SplitSeq(prefix, ".") {
		if elem == "" {
			continue
		}
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = appendElement(b, elem, esc)
	}
	return string(b)
}

// appendTagValue appends a tag value with the characters Graphite forbids
// in one (';', a leading '~') and those that would break the line
// (whitespace, control and non-ASCII characters) replaced by esc.
func appendTagValue(dst []byte, v string, esc byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == ';' || (i == 0 && c == '~') {
			c = esc
		}
		dst = append(dst, c)
	}
	return dst
}
