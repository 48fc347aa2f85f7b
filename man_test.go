package main

import (
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
)

// TestManPageTemplate keeps --help-man's fix in step with kingpin: the
// parts of its template that manPageTemplate replaces must be there, so
// that a kingpin upgrade that changes them fails here rather than bringing
// the multi-line .TH back. TestHelpManRenders in e2e/ renders the page.
func TestManPageTemplate(t *testing.T) {
	newCommandLine() // installs the template
	for _, old := range []string{kingpinManHeader, kingpinManName} {
		if strings.Contains(kingpin.ManPageTemplate, old) {
			t.Errorf("kingpin's man page template still has %q", old)
		}
	}
	if n := strings.Count(kingpin.ManPageTemplate, ".TH "); n != 1 {
		t.Errorf("the man page template has %d .TH lines, want 1", n)
	}
}
