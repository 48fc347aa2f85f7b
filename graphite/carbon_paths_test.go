package graphite

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// sendLines writes lines to carbon on one connection and closes it.
func sendLines(t *testing.T, addr, lines string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(lines)); err != nil {
		t.Fatal(err)
	}
}

// TestCarbonStoresEveryElement measures, with a real carbon-cache, what the
// escaping rests on:
//   - every byte the exporter keeps in an element, sent as it is, is stored
//     in a whisper file of that name: keeping it changes nothing in carbon;
//   - every byte 0x00-0xff, escaped as the exporter escapes it, is stored
//     at exactly the path sent, one level, one file per byte: no two
//     collide, none is refused or splits the path;
//   - every byte in a tag value, and first in one, escaped as the exporter
//     escapes it, passes carbon's tag parser, which refuses a raw leading
//     '~' and a raw ';';
//   - bytes the exporter escapes break the raw path: whitespace splits the
//     line, '.' and '/' add a level, ';' makes it a tagged series, an empty
//     element is folded away, and an invalid UTF-8 byte makes carbon drop
//     the connection, losing the lines after it.
func TestCarbonStoresEveryElement(t *testing.T) {
	netnstest.Require(t, "carbon-cache", "whisper-fetch")
	c := newCarbonCache(t, 100000)
	c.start(t)
	ts := time.Now().Unix()
	var raw, escaped strings.Builder
	for b := range 256 {
		if keepInPath[b] {
			fmt.Fprintf(&raw, "raw.h%02x.a%cb 1 %d\n", b, byte(b), ts)
		}
		line, _ := formatLine("esc", []string{fmt.Sprintf("h%02x", b), "a" + string([]byte{byte(b)}) + "b"}, 1, ts)
		escaped.WriteString(line)
	}
	// Tag values: every byte inside a value and first in it, escaped,
	// and the two carbon's tag parser refuses, raw.
	for b := range 256 {
		for _, v := range []string{"a" + string([]byte{byte(b)}) + "b", string([]byte{byte(b)}) + "x"} {
			fmt.Fprintf(&raw, "tag.h%02x;v=%s 1 %d\n", b, escapeTagValue(v), ts)
		}
	}
	fmt.Fprintf(&raw, "tagraw.tilde;v=~x 1 %d\ntagraw.semicolon;v=a;b 1 %d\n", ts, ts)
	sendLines(t, c.addr, raw.String())
	sendLines(t, c.addr, escaped.String())
	// What the escaped bytes would do unescaped.
	broken := map[string]string{
		"space": "a b", "tab": "a\tb", "cr": "a\rb", "x1c": "a\x1cb", "nbsp": "a\u00a0b", "u2028": "a\u2028b",
		"dot": "a.b", "semicolon": "a;b", "empty": "a..b",
	}
	var b strings.Builder
	for k, v := range broken {
		fmt.Fprintf(&b, "broken.%s.%s 1 %d\n", k, v, ts)
	}
	sendLines(t, c.addr, b.String())
	sendLines(t, c.addr, fmt.Sprintf("broken.utf8.a\xffb 1 %d\nbroken.after_invalid.ok 1 %d\n", ts, ts))
	sendLines(t, c.addr, fmt.Sprintf("broken.new_connection.ok 1 %d\n", ts))

	whisper := filepath.Join(c.dir, "whisper")
	exists := func(rel string) bool {
		_, err := os.Stat(filepath.Join(whisper, rel+".wsp"))
		return err == nil
	}
	var want []string
	for b := range 256 {
		if keepInPath[b] {
			want = append(want, fmt.Sprintf("raw/h%02x/a%cb", b, byte(b)))
		}
		want = append(want, fmt.Sprintf("esc/h%02x/%s", b, escapeElement("a"+string([]byte{byte(b)})+"b")))
	}
	want = append(want, "broken/new_connection/ok", "broken/empty/a/b", "broken/dot/a/b", "broken/slash/a/b")
	sendLines(t, c.addr, fmt.Sprintf("broken.slash.a/b 1 %d\n", ts))
	deadline := time.Now().Add(60 * time.Second)
	for {
		var missing []string
		for _, rel := range want {
			if !exists(rel) {
				missing = append(missing, rel)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no whisper file after 60 s for %q", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// carbon logs every name its tag parser refuses, with --debug on its
	// output: the two raw tag values, never an escaped one.
	out, err := os.ReadFile(c.log.Name())
	if err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, l := range strings.Split(string(out), "\n") {
		if _, m, ok := strings.Cut(l, "Error parsing metric "); ok {
			refused = append(refused, m)
		}
	}
	all := strings.Join(refused, "\n")
	if strings.Contains(all, "tag.h") || !strings.Contains(all, "tagraw.tilde") || !strings.Contains(all, "tagraw.semicolon") {
		t.Errorf("carbon refused the names %q, want tagraw.tilde and tagraw.semicolon and no escaped tag.*", refused)
	}
	entries, err := os.ReadDir(filepath.Join(whisper, "esc"))
	if err != nil || len(entries) != 256 {
		t.Errorf("%d levels under esc, want 256 (one per byte): %v", len(entries), err)
	}
	for k, v := range broken {
		if exists("broken/" + k + "/" + v) {
			t.Errorf("%s: carbon stored %q as it is: escaping it is needless", k, v)
		}
	}
	if exists("broken/after_invalid/ok") {
		t.Error("carbon kept the connection after an invalid UTF-8 byte")
	}
}
