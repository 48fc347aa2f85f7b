package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestExporterReadyAndLandingLinks starts the exporter on a namespace with
// every collector on and, without ever scraping /metrics, waits for
// /-/ready to answer 200 (the exporter's own first snapshot makes it
// ready); then it follows every link of the landing page, which must all
// answer 200.
func TestExporterReadyAndLandingLinks(t *testing.T) {
	netnstest.Require(t, "nfacct")
	ns := netnstest.New(t)
	ns.Run(t, "nfacct", "add", "landing")
	addr := freeAddr(t)
	log := &lockedBuffer{}
	cmd := exec.Command(binary, "--netns="+ns.Path(), "--web.listen-address="+addr)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr

	get := func(u string) (int, string, error) {
		resp, err := http.Get(u)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	var last string
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, err := get(base + "/-/ready")
		if err == nil && code == http.StatusOK {
			break
		}
		if err == nil && code != http.StatusServiceUnavailable {
			t.Fatalf("/-/ready answered %d %q, want 200 or, while starting, 503", code, body)
		}
		last = body
		if time.Now().After(deadline) {
			t.Fatalf("/-/ready not 200 within 10s (last answer %q, %v); log:\n%s", last, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body, _ := get(base + "/-/healthy"); code != http.StatusOK {
		t.Errorf("/-/healthy answered %d %q", code, body)
	}

	code, page, err := get(base + "/")
	if err != nil || code != http.StatusOK {
		t.Fatalf("landing page: %d %v", code, err)
	}
	links := regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(page, -1)
	pageURL, _ := url.Parse(base + "/")
	var followed []string
	for _, l := range links {
		ref, err := url.Parse(l[1])
		if err != nil {
			t.Errorf("landing page link %q: %v", l[1], err)
			continue
		}
		u := pageURL.ResolveReference(ref)
		if u.Host != pageURL.Host {
			t.Errorf("landing page links off the exporter: %s", u)
			continue
		}
		code, body, err := get(u.String())
		if err != nil || code != http.StatusOK {
			t.Errorf("landing page link %s answers %d %v: %.200s", u.Path, code, err, body)
		}
		followed = append(followed, u.Path)
	}
	if got := strings.Join(followed, " "); got != "/metrics /-/healthy /-/ready /top" {
		t.Errorf("landing page links to %q, want /metrics /-/healthy /-/ready /top", got)
	}
}
