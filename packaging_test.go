package main

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/config"
)

// TestPackagedSysctlIsREADMEs keeps the packages' sysctl.d file the README's
// Kernel prerequisites block, byte for byte.
func TestPackagedSysctlIsREADMEs(t *testing.T) {
	readme := string(mustReadFile(t, "README.md"))
	i := strings.Index(readme, "## Kernel prerequisites")
	if i < 0 {
		t.Fatal(`README has no "Kernel prerequisites" section`)
	}
	m := regexp.MustCompile("(?s)```ini\n(.*?)```").FindStringSubmatch(readme[i:])
	if m == nil {
		t.Fatal("README's Kernel prerequisites have no ini block")
	}
	if got := string(mustReadFile(t, "packaging/60-netfilter-exporter.conf")); got != m[1] {
		t.Errorf("packaging/60-netfilter-exporter.conf is not README's block:\n%s\nwant:\n%s", got, m[1])
	}
	for _, s := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp", "nf_conntrack_events"} {
		if !regexp.MustCompile(`(?m)^net\.netfilter\.` + s + ` = 1$`).MatchString(m[1]) {
			t.Errorf("the sysctl block does not set net.netfilter.%s = 1", s)
		}
	}
}

// TestPackagedConfigFiltersNothing checks the packages' default config:
// it configures exactly what an empty file does, and documents (commented
// out) every top-level setting of examples/config.yml.
func TestPackagedConfigFiltersNothing(t *testing.T) {
	got, err := config.Load("packaging/config.yml")
	if err != nil {
		t.Fatal(err)
	}
	empty, err := config.Parse(nil, "empty")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, empty) {
		t.Errorf("packaging/config.yml configures %+v, want what an empty file does, %+v", got, empty)
	}
	packaged := string(mustReadFile(t, "packaging/config.yml"))
	for _, key := range regexp.MustCompile(`(?m)^([a-z_]+):`).FindAllStringSubmatch(string(mustReadFile(t, "examples/config.yml")), -1) {
		if !strings.Contains(packaged, "\n#"+key[1]+":") {
			t.Errorf("packaging/config.yml does not document %s: (commented out)", key[1])
		}
	}
}

// TestREADMEInstallStartsWithThePackage keeps the README's Install section
// starting with the apt install of this version's .deb.
func TestREADMEInstallStartsWithThePackage(t *testing.T) {
	readme := string(mustReadFile(t, "README.md"))
	version := strings.TrimSpace(string(mustReadFile(t, "VERSION")))
	want := "## Install\n\n```sh\napt install ./netfilter-exporter_" + version + "-1_amd64.deb\n"
	if !strings.Contains(readme, want) {
		t.Errorf("README's Install section does not start with\n%s", want)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
