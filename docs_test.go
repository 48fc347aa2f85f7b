package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/netfilter-exporter/netfilter_exporter/config"
)

// markdownLink matches an inline Markdown link's target: [text](target).
var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// headingSlug returns the anchor GitHub gives a Markdown heading: lower
// case, punctuation other than '-' and '_' removed, spaces made '-'.
func headingSlug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the heading anchors of a Markdown file, fenced code left
// out.
func anchors(text string) map[string]bool {
	a := make(map[string]bool)
	fenced := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		a[headingSlug(strings.TrimLeft(l, "#"))] = true
	}
	return a
}

// docFiles returns the README and every page of docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in docs/ (%v)", err)
	}
	return append([]string{"README.md"}, pages...)
}

// TestDocsLinks keeps every relative link of the README and of docs/ true:
// the file it names exists and, where it names an anchor, the page has that
// heading.
func TestDocsLinks(t *testing.T) {
	cache := map[string]map[string]bool{}
	for _, doc := range docFiles(t) {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markdownLink.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %s: %v", doc, target, err)
				continue
			}
			if anchor == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			if cache[path] == nil {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				cache[path] = anchors(string(b))
			}
			if !cache[path][anchor] {
				t.Errorf("%s: link %s: %s has no heading #%s", doc, target, path, anchor)
			}
		}
	}
}

// TestREADMEIsAFrontDoor keeps the README short enough to read at the door:
// the depth belongs in docs/.
func TestREADMEIsAFrontDoor(t *testing.T) {
	fi, err := os.Stat("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 30*1024 {
		t.Errorf("README.md is %d bytes, more than 30 KiB: move the depth to docs/", fi.Size())
	}
}

// TestDocsYAMLParses parses every yaml block of the README and of docs/:
// a snippet a reader copies must at least be YAML. (The blocks that are
// whole configurations are also checked by the tool they are for, in e2e/.)
func TestDocsYAMLParses(t *testing.T) {
	n := 0
	for _, doc := range docFiles(t) {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		var block strings.Builder
		in := false
		for _, l := range strings.Split(string(text), "\n") {
			switch trimmed := strings.TrimSpace(l); {
			case !in && trimmed == "```yaml":
				in = true
				block.Reset()
			case in && trimmed == "```":
				in = false
				n++
				var v any
				if err := yaml.Unmarshal([]byte(block.String()), &v); err != nil {
					t.Errorf("%s: a yaml block does not parse: %v\n%s", doc, err, block.String())
				}
			case in:
				// An indented block (in a list item) is YAML once the
				// list's indentation is taken off.
				block.WriteString(strings.TrimPrefix(l, "  ") + "\n")
			}
		}
	}
	if n < 4 {
		t.Errorf("found %d yaml blocks in the README and docs/, want at least 4: is the parser still right?", n)
	}
}

// TestUlogd2PageFilters loads the configuration file of the ulogd2 page's
// filters table as --config.file does: the rules a migration copies must
// be valid, and be the rules the page says (one accept, one deny).
func TestUlogd2PageFilters(t *testing.T) {
	text, err := os.ReadFile("docs/ulogd2-migration.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(text), -1)
	n := 0
	for _, b := range blocks {
		if !strings.Contains(b[1], "filters:") {
			continue
		}
		n++
		path := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(path, []byte(b[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := config.Load(path)
		if err != nil {
			t.Errorf("docs/ulogd2-migration.md: %v\n%s", err, b[1])
			continue
		}
		if accept, deny := f.Filter.Rules(); accept != 1 || deny != 1 {
			t.Errorf("docs/ulogd2-migration.md: %d accept and %d deny rules, want 1 and 1:\n%s", accept, deny, b[1])
		}
	}
	if n != 1 {
		t.Errorf("docs/ulogd2-migration.md has %d yaml blocks with filters, want 1", n)
	}
}
