package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRun checks the figures against what is known of the module: the
// flow package imports others of the module and exports names, internal
// packages and commands are told apart, and the total line adds up.
func TestRun(t *testing.T) {
	var b bytes.Buffer
	if err := run(&b); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var edges, names int
	for _, l := range lines[1 : len(lines)-1] {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("row %q has %d fields, want 4", l, len(f))
		}
		rows[f[0]] = f[1:]
		e, _ := strconv.Atoi(f[1])
		n, _ := strconv.Atoi(f[2])
		edges += e
		names += n
	}
	for pkg, kind := range map[string]string{".": "command", "flow": "public", "internal/topk": "internal", "internal/cmd/surface": "command"} {
		if r, ok := rows[pkg]; !ok || r[2] != kind {
			t.Errorf("package %s: row %v, want kind %s", pkg, r, kind)
		}
	}
	if r := rows["flow"]; r == nil || r[0] == "0" || r[1] == "0" {
		t.Errorf("flow: row %v, want imports and exported names", r)
	}
	m := regexp.MustCompile(`^(\d+) packages, (\d+) import edges inside the module, (\d+) exported names`).FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("last line %q", lines[len(lines)-1])
	}
	if m[1] != strconv.Itoa(len(rows)) || m[2] != strconv.Itoa(edges) || m[3] != strconv.Itoa(names) {
		t.Errorf("total %q, want %d packages, %d edges, %d names", lines[len(lines)-1], len(rows), edges, names)
	}
}
