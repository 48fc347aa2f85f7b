package graphite

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// The path grammar this file checks, as the README documents it:
//
//	path    = element *("." element)
//	element = "%" / 1*(kept / "%" HEX HEX)
//	kept    = ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / ":" /
//	          "<" / ">" / "@" / "^" / "_" / "`" / "~"
//	HEX     = DIGIT / "A" / "B" / "C" / "D" / "E" / "F"
//
// A tag value is 1*(tagkept / "%" HEX HEX), tagkept any byte from '!' to
// '~' but ';' and '%', and not '~' first.

var errGrammar = errors.New("outside the path grammar")

// isHex reports whether c is an upper-case hex digit.
func isHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// unescape decodes the escapes of s, checking that every other byte is one
// kept reports as kept.
func unescape(s string, kept func(i int, c byte) bool) (string, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == escapeByte {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", fmt.Errorf("%w: %q: bad escape at %d", errGrammar, s, i)
			}
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b = append(b, byte(v))
			i += 2
			continue
		}
		if !kept(i, c) {
			return "", fmt.Errorf("%w: %q: byte %#02x at %d", errGrammar, s, c, i)
		}
		b = append(b, c)
	}
	return string(b), nil
}

// decodeElement returns the raw element e was escaped from.
func decodeElement(e string) (string, error) {
	if e == "" {
		return "", fmt.Errorf("%w: empty element", errGrammar)
	}
	if e == emptyElement {
		return "", nil
	}
	return unescape(e, func(_ int, c byte) bool { return keepInPath[c] })
}

// checkElementGrammar checks that e is one element of the grammar.
func checkElementGrammar(e string) error {
	_, err := decodeElement(e)
	return err
}

// decodePath returns the elements a path was made of.
func decodePath(p string) ([]string, error) {
	var elems []string
	for e := range strings.SplitSeq(p, ".") {
		raw, err := decodeElement(e)
		if err != nil {
			return nil, err
		}
		elems = append(elems, raw)
	}
	return elems, nil
}

// decodeTagValue returns the raw value v was escaped from.
func decodeTagValue(v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("%w: empty tag value", errGrammar)
	}
	return unescape(v, func(i int, c byte) bool { return keepInTag[c] && (i > 0 || c != '~') })
}

// elementList decodes a fuzz input into a list of elements: its first byte
// separates the elements in the rest. An input of one byte is one empty
// element; an empty input none.
func elementList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s[1:], s[:1])
}

// checkLine checks one plaintext line: a path, a value and a timestamp
// separated by single spaces, ended by a newline, and nothing else.
func checkLine(t *testing.T, line string) (path string) {
	t.Helper()
	body, ok := strings.CutSuffix(line, "\n")
	if !ok || strings.ContainsAny(body, "\n\r") {
		t.Fatalf("not one line: %q", line)
	}
	f := strings.Split(body, " ")
	if len(f) != 3 || strings.ContainsAny(f[0], "\t\v\f\x00") {
		t.Fatalf("not path value timestamp: %q", line)
	}
	return f[0]
}

var fuzzPathSeeds = [][2]string{
	{"/nfacct/sp ace/pkts", "/nfacct/sp_ace/pkts"},
	{"/nfacct/a//b/pkts", "/nfacct/a/_/b/pkts"},
	{"/nfacct/héllo/pkts", "/nfacct/h_llo/pkts"},
	{"/nfacct/web:8080/bytes", "/nfacct/web_8080/bytes"},
	{"/nfacct/objects", "/exporter/nfacct/objects"},
	{",a.b,c", ",a,b.c"},
	{"/%", "/"},
	{"/%41", "/A"},
	{"/a\xffb", "/a\xc3\xbfb"},
	{"/*?[]{}();,='\"\\|", "/x"},
	{"", "/"},
}

// FuzzPath checks, for two lists of path elements, that each gives one line
// whose path follows the documented grammar and decodes back to the list,
// so that two different lists never give one path.
func FuzzPath(f *testing.F) {
	for _, s := range fuzzPathSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		pa, pb := elementList(a), elementList(b)
		var paths [2]string
		for i, elems := range [][]string{pa, pb} {
			line, ok := formatLine("netfilter", elems, 1, 1700000000)
			if len(elems) == 0 {
				if ok {
					t.Fatalf("line for no element: %q", line)
				}
				continue
			}
			if !ok {
				t.Fatalf("no line for %q", elems)
			}
			paths[i] = checkLine(t, line)
			rest, ok := strings.CutPrefix(paths[i], "netfilter.")
			if !ok {
				t.Fatalf("%q: prefix lost", paths[i])
			}
			got, err := decodePath(rest)
			if err != nil {
				t.Fatalf("%q: %v", elems, err)
			}
			if !slices.Equal(got, elems) {
				t.Fatalf("%q decodes to %q", elems, got)
			}
		}
		if len(pa) > 0 && len(pb) > 0 && paths[0] == paths[1] && !slices.Equal(pa, pb) {
			t.Fatalf("%q and %q both give %q", pa, pb, paths[0])
		}
	})
}

// FuzzTaggedLine checks, for two label values, that a tagged sample gives one
// line whose tag values carbon accepts (not empty, no ';', no leading '~',
// printable ASCII) and decode back to the label values: two different
// values never give one series.
func FuzzTaggedLine(f *testing.F) {
	for _, s := range [][2]string{{"sp ace", "sp_ace"}, {"héllo", "h_llo"}, {"~x", "_x"}, {"a;b", "a_b"}, {"5%", "5%25"}, {"web:8080", "web_8080"}} {
		f.Add(s[0], s[1])
	}
	d := tree.NewDesc("netfilter_nfacct_bytes_total", "h", tree.Counter, "name", "family")
	f.Fuzz(func(t *testing.T, a, b string) {
		snap := &tree.Snapshot{Time: time.Unix(1700000000, 0), Samples: []tree.Sample{
			{Desc: d, LabelValues: []string{a, b}, Path: []string{"x"}, Value: 1},
		}}
		fm := newFormatter("netfilter", Cumulative)
		fm.tagged = true
		lines := formatLines(fm, snap)
		if len(lines) != 1 {
			t.Fatalf("%d lines", len(lines))
		}
		path := checkLine(t, lines[0])
		segs := strings.Split(path, ";")
		if segs[0] != "netfilter.nfacct_bytes_total" {
			t.Fatalf("name %q", segs[0])
		}
		got := map[string]string{}
		for _, seg := range segs[1:] {
			k, v, ok := strings.Cut(seg, "=")
			if !ok {
				t.Fatalf("segment %q", seg)
			}
			raw, err := decodeTagValue(v)
			if err != nil {
				t.Fatal(err)
			}
			got[k] = raw
		}
		want := map[string]string{}
		if a != "" {
			want["object"] = a
		}
		if b != "" {
			want["family"] = b
		}
		if len(got) != len(want) || got["object"] != want["object"] || got["family"] != want["family"] {
			t.Fatalf("tags %q, want %q", got, want)
		}
	})
}
