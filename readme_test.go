package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The command's own tests are in e2e/, against the built binary; this one
// reads the flags from the command line model itself, hidden ones left out.

// TestREADMEDocumentsEveryFlag keeps the README's flag table true.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range newCommandLine().app.Model().Flags {
		if f.Hidden || f.Name == "help" || f.Name == "version" {
			continue
		}
		if !strings.Contains(string(readme), "`--"+f.Name) {
			t.Errorf("README does not document --%s", f.Name)
		}
	}
}

// TestREADMEDocumentsEveryMetric keeps the README's metric tables true: every
// family of the golden outputs (collector/testdata, each a
// collector's whole output) is named in it, where a name written
// `a_{b,c}_total` stands for a_b_total and a_c_total.
func TestREADMEDocumentsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := make(map[string]bool)
	for _, m := range metricMention.FindAllString(string(readme), -1) {
		for _, name := range expandBraces(m) {
			documented[name] = true
		}
	}
	goldens, err := filepath.Glob("collector/testdata/*.prom")
	if more, _ := filepath.Glob("graphite/testdata/*.prom"); len(more) > 0 {
		goldens = append(goldens, more...)
	}
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files in collector/testdata (%v)", err)
	}
	families := 0
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "#" || f[1] != "TYPE" {
				continue
			}
			families++
			if !documented[f[2]] {
				t.Errorf("README does not name %s (a family of %s)", f[2], g)
			}
		}
	}
	if families < 20 {
		t.Errorf("read %d families from %d golden files: the goldens changed shape?", families, len(goldens))
	}
}

// metricMention matches a metric name in the README, braces included.
var metricMention = regexp.MustCompile(`netfilter_[a-z0-9_]*(?:\{[a-z0-9_,]+\}[a-z0-9_]*)*`)

// expandBraces turns a_{b,c}_d into a_b_d and a_c_d, and keeps the text
// before the first brace as written, so that a name followed by its labels
// (`name{family,table}`) reads as the name; what it makes of the labels
// matches no family.
func expandBraces(s string) []string {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return []string{s}
	}
	j := strings.IndexByte(s[i:], '}') + i
	out := []string{s[:i]}
	for _, alt := range strings.Split(s[i+1:j], ",") {
		for _, rest := range expandBraces(s[j+1:]) {
			out = append(out, s[:i]+alt+rest)
		}
	}
	return out
}
