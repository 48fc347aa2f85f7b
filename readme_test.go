package main

import (
	"os"
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
