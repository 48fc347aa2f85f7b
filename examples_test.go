package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestExamplesAreChecked makes sure no file lands in examples/ without a
// test that parses or runs it.
func TestExamplesAreChecked(t *testing.T) {
	checked := map[string]bool{
		"prometheus.yml":     true, // TestExamplePrometheusConfig
		"nfacct-iptables.sh": true, // TestExampleNfacctRecipe
		"config.yml":         true, // TestExampleConfig
	}
	entries, err := os.ReadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !checked[e.Name()] {
			t.Errorf("examples/%s is not checked by any test", e.Name())
		}
	}
}

func TestExamplePrometheusConfig(t *testing.T) {
	netnstest.Require(t, "promtool")
	out, err := exec.Command("promtool", "check", "config", "examples/prometheus.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config examples/prometheus.yml: %v\n%s", err, out)
	}
}

func TestExampleConfig(t *testing.T) {
	out, err := exec.Command(binary, "--config.file=examples/config.yml", "--config.check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("--config.check examples/config.yml: %v\n%s", err, out)
	}
}

// TestExampleNfacctRecipe runs the recipe in a throwaway namespace, makes
// HTTP-port traffic there, and checks that the exporter, with the labels the
// recipe's names are made for, shows what nfacct list shows.
func TestExampleNfacctRecipe(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "nfacct", "sh")
	ns := netnstest.New(t)
	ns.Run(t, "sh", "examples/nfacct-iptables.sh")

	l := ns.Listen(t, "tcp4", "127.0.0.1:80")
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
	}()
	c := ns.Dial(t, "tcp4", "127.0.0.1:80")
	if _, err := c.Write([]byte("GET / HTTP/1.0\n")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	e := startExporter(t, "--netns="+ns.Path(), "--nfacct.name-labels=family,service")
	var ref map[string][2]float64
	deadline := time.Now().Add(5 * time.Second)
	for {
		ref = nfacctList(t, ns)
		_, mfs := e.scrape(t)
		got, _ := value(mfs, "netfilter_nfacct_packets_total", map[string]string{"name": "ipv4.http", "family": "ipv4", "service": "http"})
		if got > 0 && got == ref["ipv4.http"][0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipv4.http: exporter %v packets, nfacct list %v", got, ref["ipv4.http"])
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Every object of the recipe is exported with its labels.
	body, mfs := e.scrape(t)
	names := regexp.MustCompile(`(?m)^netfilter_nfacct_bytes_total\{.*name="([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(names) != 8 {
		t.Errorf("exporter shows %d objects, want 8 (3 services and a total, per family):\n%s", len(names), body)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, svc := range []string{"http", "https", "dns", "total"} {
			if _, ok := value(mfs, "netfilter_nfacct_bytes_total", map[string]string{"name": fam + "." + svc, "family": fam, "service": svc}); !ok {
				t.Errorf("no netfilter_nfacct_bytes_total for %s.%s with family and service labels", fam, svc)
			}
		}
	}
	if ref["ipv4.total"][0] < ref["ipv4.http"][0] {
		t.Errorf("ipv4.total %v counts less than ipv4.http %v", ref["ipv4.total"], ref["ipv4.http"])
	}
}

// TestDockerfileBuildsLikeCI checks, since no Docker engine runs here, that
// the image is built by the same make target CI runs, with the Go release
// go.mod asks for.
func TestDockerfileBuildsLikeCI(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("no go directive in go.mod")
	}
	if !strings.Contains(string(df), "FROM golang:"+string(goVersion[1])+"-") {
		t.Errorf("Dockerfile does not build with golang:%s as go.mod asks", goVersion[1])
	}
	var runs []string
	for _, line := range strings.Split(string(df), "\n") {
		if strings.HasPrefix(line, "RUN ") {
			runs = append(runs, strings.TrimPrefix(line, "RUN "))
		}
	}
	if want := []string{"go mod download", "make build"}; strings.Join(runs, "|") != strings.Join(want, "|") {
		t.Errorf("Dockerfile runs %q, want %q", runs, want)
	}
	if !regexp.MustCompile(`(?m)^test:.*\bbuild\b`).Match(makefile) {
		t.Error("make test does not run make build, so CI would not run the Dockerfile's build command")
	}
	if !strings.Contains(string(df), "ENTRYPOINT [\"/bin/netfilter_exporter\"]") {
		t.Error("the image does not run the exporter")
	}
}
