package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/netfilter-exporter/netfilter_exporter/config"
	"github.com/netfilter-exporter/netfilter_exporter/flow"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestHelpTellsTheTruth reads --help as a user would: what the exporter
// exports, and the real defaults of the flags whose default depends on the
// config file.
func TestHelpTellsTheTruth(t *testing.T) {
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	help := strings.Join(strings.Fields(string(out)), " ") // undo the wrapping
	for _, want := range []string{
		"nfacct counters and quotas",
		"conntrack flows",
		"conntrack table statistics",
		"--conntrack.group-by=" + flow.DefaultGroupBy + " ",
		"--conntrack.max-series=" + strconv.Itoa(config.DefaultMaxSeries) + " ",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	for _, wrong := range []string{`--conntrack.group-by=""`, "--conntrack.max-series=0 "} {
		if strings.Contains(help, wrong) {
			t.Errorf("--help shows %s, which is not the default", wrong)
		}
	}
}

// TestHelpManRenders renders --help-man with man, as the packages install
// it: one .TH line, a NAME with a summary for whatis, every section, and
// no warning from groff.
func TestHelpManRenders(t *testing.T) {
	out, err := exec.Command(binary, "--help-man").Output()
	if err != nil {
		t.Fatalf("--help-man: %v\n%s", err, out)
	}
	th := regexp.MustCompile(`(?m)^\.TH .*$`).FindAllString(string(out), -1)
	if len(th) != 1 || !regexp.MustCompile(`^\.TH netfilter_exporter 1 "[0-9-]*" "netfilter_exporter[ 0-9.]*" "User Commands"$`).MatchString(th[0]) {
		t.Errorf("--help-man's .TH lines: %q, want one: name, section, date, version, manual", th)
	}
	if !strings.Contains(string(out), ".SH \"NAME\"\nnetfilter_exporter \\- ") {
		t.Errorf("--help-man's NAME is not \"netfilter_exporter \\- summary\":\n%.300s", out)
	}
	netnstest.RequireTools(t, "man")
	page := filepath.Join(t.TempDir(), exporterName+".1")
	if err := os.WriteFile(page, out, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("man", "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=", "PAGER=cat", "MANPAGER=cat")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	text, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Errorf("man -l: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "--config.file", "User Commands"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the rendered page lacks %q:\n%.600s", want, text)
		}
	}
}

// TestExporterGraphiteTaggedHelpExample sends the example series that
// --graphite.tagged's help shows, for real: an nfacct object of the
// example's name, the exporter in tagged mode, and a Graphite listener
// that must receive exactly that series name.
func TestExporterGraphiteTaggedHelpExample(t *testing.T) {
	netnstest.Require(t, "nfacct")
	var help string
	app := kingpin.New(exporterName, "")
	config.AddFlags(app) // the package that defines the flag
	for _, f := range app.Model().Flags {
		if f.Name == "graphite.tagged" {
			help = f.Help
		}
	}
	m := regexp.MustCompile(`\(([^ ()]+;object=([^ ();]+))\)`).FindStringSubmatch(help)
	if m == nil {
		t.Fatalf("--graphite.tagged help shows no example series with an object tag: %q", help)
	}
	example, object := m[1], m[2]
	ns := netnstest.New(t)
	ns.Run(t, "nfacct", "add", object)
	c := newCarbon(t)
	startExporter(t, "--netns="+ns.Path(), "--no-collector.conntrack", "--graphite.tagged",
		"--graphite.address="+c.l.Addr().String(), "--graphite.interval=300ms")
	c.waitFor(t, 10*time.Second, func(path string, _ float64, _ int64) bool { return path == example })
}
