package graphite

import (
	"strings"
)

// escapeByte is the byte that starts an escape in a Graphite path element or
// tag value: a byte that must not appear as it is there is written as
// escapeByte followed by its value in two upper-case hexadecimal digits
// ("sp ace" becomes "sp%20ace"), and escapeByte itself is always escaped
// ("%" becomes "%25"), so two different elements never give one path.
const escapeByte = '%'

// emptyElement is what an empty path element is sent as: carbon would
// otherwise fold the empty level away ("a..b" is stored as "a.b"). No other
// element escapes to it, as an escape is always followed by two hex digits.
const emptyElement = "%"

// keepInPath[c] is true for the bytes a path element keeps as they are:
// carbon stores them in a whisper file name unchanged and graphite-web's
// render grammar takes them literally. Every other byte is escaped:
//   - whitespace and control bytes: carbon splits a line on whitespace
//     (Python's str.split, which also splits on 0x1c-0x1f), and graphite-web's
//     grammar takes printable characters only;
//   - '.' and '/': they add levels (carbon maps '.' to '/' in the file name);
//   - ';': carbon parses the line as a tagged series;
//   - '(' ')' ',' '\” '"' '\\' '|' '=': symbols of graphite-web's render
//     grammar (a call, its arguments, a keyword argument, a string, a
//     backslash escape, a pipe);
//   - '*' '?' '[' ']' '{' '}': graphite-web's glob patterns, so a query for
//     the element would match others too;
//   - '%': the escape byte itself;
//   - every byte from 0x80: graphite-web parses non-ASCII characters in a
//     render target only with UTF8_METRICS (off by default), carbon splits
//     lines on Unicode spaces such as U+00A0 and U+2028, and an invalid UTF-8
//     byte makes carbon drop the whole connection;
//   - ! $ & + < > @ ^ ` ~: carbon stores them, but carbon-c-relay, the
//     usual relay in front of carbon, rewrites every byte outside
//     A-Z a-z 0-9 and its -c set (by default - _ : #) to '_', which would
//     merge series again behind it (measured with carbon-c-relay 3.7).
//
// Kept: A-Z a-z 0-9 and # - : _ (measured with the carbon-cache of
// graphite-carbon 1.1: see TestCarbonStoresEveryElement). Behind a
// carbon-c-relay, add '%' to its -c set (docs/scale-out.md).
var keepInPath = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range []byte("#-:_") {
		t[c] = true
	}
	return t
}()

// keepInTag[c] is true for the bytes a tag value keeps as they are (but for
// a leading '~', always escaped, which carbon refuses): carbon refuses ';' in
// a tag value and splits the line on whitespace, and the other bytes escaped
// are those escaped in a path for the same reasons (control bytes,
// non-ASCII, the escape byte). Dots and the other punctuation are kept: a
// tagged series is stored by the hash of its name, and graphite-web's tag
// expressions take the value as a string.
var keepInTag = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = true
	}
	t[';'], t[escapeByte] = false, false
	return t
}()

const hexDigits = "0123456789ABCDEF"

// appendEscaped appends b as an escape: escapeByte and two hex digits.
func appendEscaped(dst []byte, b byte) []byte {
	return append(dst, escapeByte, hexDigits[b>>4], hexDigits[b&0xf])
}

// appendElement appends e to dst as one Graphite path element: the bytes
// keepInPath keeps as they are, every other byte escaped (see escapeByte),
// and an empty element as emptyElement. The mapping is injective and
// depends on e alone.
func appendElement(dst []byte, e string) []byte {
	if e == "" {
		return append(dst, emptyElement...)
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; keepInPath[c] {
			dst = append(dst, c)
		} else {
			dst = appendEscaped(dst, c)
		}
	}
	return dst
}

// sanitizePrefix returns prefix made safe for Graphite. The prefix may hold
// several levels separated by dots; each level is escaped as escapeElement
// does, and empty levels (leading, trailing or doubled dots) are dropped. The
// result is empty when prefix has no level at all.
func sanitizePrefix(prefix string) string {
	var b []byte
	for elem := range strings.SplitSeq(prefix, ".") {
		if elem == "" {
			continue
		}
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = appendElement(b, elem)
	}
	return string(b)
}

// appendTagValue appends a tag value with the bytes keepInTag does not keep,
// and a leading '~', escaped as appendElement escapes them. The mapping is
// injective. An empty value is never sent (see appendTaggedLine).
func appendTagValue(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if keepInTag[c] && (i > 0 || c != '~') {
			dst = append(dst, c)
		} else {
			dst = appendEscaped(dst, c)
		}
	}
	return dst
}
