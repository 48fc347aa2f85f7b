package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// TestExamplesAreChecked makes sure no file lands in examples/ without a
// test that parses or runs it: each file names its tests, and each of those
// must exist in the module and reach the file's name (in its own code, or in
// a function, constant or variable of its package that it uses).
func TestExamplesAreChecked(t *testing.T) {
	checkedBy := map[string][]string{
		"prometheus.yml":                  {"TestExamplePrometheusConfig"},
		"nfacct-iptables.sh":              {"TestExampleNfacctRecipe"},
		"nftables.nft":                    {"TestExampleNftablesRecipe"},
		"nftables-log-and-drop.nft":       {"TestExampleNftablesLogAndDrop"},
		"iptables-log-and-drop.rules":     {"TestExampleIptablesLogAndDrop"},
		"config.yml":                      {"TestExampleConfig", "TestExampleConfigAsInstalledCountsLoopback"},
		"alerts.yml":                      {"TestExampleAlertRules"},
		"alerts_test.yml":                 {"TestExampleAlertRules"},
		"grafana-dashboard.json":          {"TestExampleGrafanaDashboard", "TestEndToEndPrometheusAndCarbon"},
		"grafana-dashboard-graphite.json": {"TestExampleGraphiteDashboard", "TestEndToEndPrometheusAndCarbon"},
		"netfilter_exporter.service":      {"TestExampleSystemdUnit", "TestExampleSystemdUnitSandbox"},
		"netfilter_exporter.socket":       {"TestExampleSystemdUnit", "TestExampleSystemdSocketActivation"},
		"netfilter_exporter-socket.conf":  {"TestExampleSystemdUnit", "TestExampleSystemdSocketActivation"},
		"daemonset.yaml":                  {"TestExampleKubernetes"},
		"recording_rules.yml":             {"TestExampleRecordingRules", "TestDocsScaleOut"},
		"recording_rules_test.yml":        {"TestExampleRecordingRules"},
	}
	entries, err := os.ReadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	src := parseModule(t)
	for _, e := range entries {
		tests, ok := checkedBy[e.Name()]
		if !ok {
			t.Errorf("examples/%s is not checked by any test", e.Name())
		}
		for _, name := range tests {
			pkg := src.find(name)
			if pkg == nil {
				t.Errorf("examples/%s names %s, which no _test.go file of the module declares", e.Name(), name)
				continue
			}
			if !pkg.reaches(name, e.Name()) {
				t.Errorf("examples/%s names %s, which never uses the file's name", e.Name(), name)
			}
		}
	}
	for name := range checkedBy {
		if _, err := os.Stat(filepath.Join("examples", name)); err != nil {
			t.Errorf("the list names examples/%s: %v", name, err)
		}
	}
}

// moduleSource is the Go source of the module, by package directory.
type moduleSource map[string]*pkgSource

// pkgSource is one package's top-level declarations (functions, methods,
// constants, variables, by name) and, for each, the names it uses and the
// string literals it holds.
type pkgSource struct {
	idents  map[string][]string
	strings map[string][]string
	tests   map[string]bool
}

// parseModule parses every .go file of the module (TestMain runs the tests
// from the module's root).
func parseModule(t *testing.T) moduleSource {
	t.Helper()
	src := moduleSource{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		p := src[dir]
		if p == nil {
			p = &pkgSource{idents: map[string][]string{}, strings: map[string][]string{}, tests: map[string]bool{}}
			src[dir] = p
		}
		for _, decl := range f.Decls {
			switch decl := decl.(type) {
			case *ast.FuncDecl:
				p.add(decl.Name.Name, decl)
				if decl.Recv == nil && strings.HasSuffix(path, "_test.go") && strings.HasPrefix(decl.Name.Name, "Test") {
					p.tests[decl.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, spec := range decl.Specs {
					if vs, ok := spec.(*ast.ValueSpec); ok {
						for _, n := range vs.Names {
							p.add(n.Name, vs)
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("parsing the module: %v", err)
	}
	return src
}

// add records what the declaration node of name uses.
func (p *pkgSource) add(name string, node ast.Node) {
	ast.Inspect(node, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.Ident:
			p.idents[name] = append(p.idents[name], n.Name)
		case *ast.BasicLit:
			if n.Kind == token.STRING {
				p.strings[name] = append(p.strings[name], n.Value)
			}
		}
		return true
	})
}

// find returns the package that declares the test function name.
func (src moduleSource) find(name string) *pkgSource {
	for _, p := range src {
		if p.tests[name] {
			return p
		}
	}
	return nil
}

// reaches reports whether the declaration from, or one it uses in turn,
// holds a string literal containing s.
func (p *pkgSource) reaches(from, s string) bool {
	seen := map[string]bool{from: true}
	queue := []string{from}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, lit := range p.strings[n] {
			if strings.Contains(lit, s) {
				return true
			}
		}
		for _, id := range p.idents[n] {
			if _, declared := p.idents[id]; declared && !seen[id] {
				seen[id] = true
				queue = append(queue, id)
			}
		}
	}
	return false
}

func TestExamplePrometheusConfig(t *testing.T) {
	netnstest.RequireTools(t, "promtool")
	out, err := exec.Command("promtool", "check", "config", "examples/prometheus.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config examples/prometheus.yml: %v\n%s", err, out)
	}
	// It loads the alerting rules, every one of them.
	var rules struct {
		Groups []struct{ Rules []map[string]any }
	}
	if err := yaml.Unmarshal(mustRead(t, "examples/alerts.yml"), &rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Groups {
		n += len(g.Rules)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", n); n == 0 || !strings.Contains(string(out), want) {
		t.Errorf("promtool check config does not load examples/alerts.yml's %d rules (want %q):\n%s", n, want, out)
	}
}

func TestExampleConfig(t *testing.T) {
	out, err := exec.Command(binary, "--config.file=examples/config.yml", "--config.check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("--config.check examples/config.yml: %v\n%s", err, out)
	}
}

// TestExampleConfigAsInstalledCountsLoopback installs the configuration
// file as docs/deploy.md's systemd recipe does, runs the exporter with the
// unit's arguments in a namespace with loopback traffic, and checks that
// every flow is counted and nothing is filtered: a shipped example that
// hid traffic showed dump_entries 0 and series 0.
func TestExampleConfigAsInstalledCountsLoopback(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "conntrack", "sysctl")
	// The file the recipe installs where the unit reads it.
	recipe := regexp.MustCompile(`(?m)^install -D -m 0644 (\S+) ` + regexp.QuoteMeta(installedConfig) + `$`).FindStringSubmatch(string(mustRead(t, "docs/deploy.md")))
	if recipe == nil {
		t.Fatalf("docs/deploy.md does not install a file as %s", installedConfig)
	}
	var args []string
	for _, a := range execArgs(t, lastSetting(unitSettings(t, unitFile), "ExecStart")) {
		// The test's own listen address stands in for the unit's.
		if !strings.HasPrefix(a, "--web.listen-address=") {
			args = append(args, strings.Replace(a, "--config.file=examples/config.yml", "--config.file="+recipe[1], 1))
		}
	}
	if !slices.Contains(args, "--config.file="+recipe[1]) {
		t.Fatalf("the unit's arguments %q do not read %s", args, installedConfig)
	}
	ns := netnstest.New(t)
	netnstest.TrackConnections(t, ns)
	e := startExporter(t, append(args, "--netns="+ns.Path())...)

	netnstest.UDPExchange(t, ns, ns, "udp4", "127.0.0.1:9000", 2, 100)
	netnstest.UDPExchange(t, ns, ns, "udp6", "[::1]:9000", 2, 100)
	netnstest.TCPExchange(t, ns, ns, "tcp4", "127.0.0.1:8080", 1000)
	ref := netnstest.SettledConntrackList(t, ns)
	if len(ref) < 3 {
		t.Fatalf("conntrack lists %d loopback entries, want at least 3: %+v", len(ref), ref)
	}
	// A dump while the flows are in the table, then their DESTROY events.
	eventually(t, 20*time.Second, func() string {
		_, mfs := e.scrape(t)
		if got, _ := value(mfs, "netfilter_conntrack_dump_entries", nil); int(got) < len(ref) {
			return fmt.Sprintf("dump_entries = %v, want the %d loopback entries; log:\n%s", got, len(ref), e.stderr)
		}
		return ""
	})
	_, mfs := flushAndWait(t, e, ns, len(ref))
	if flows, n := sum(mfs, "netfilter_conntrack_flows_total", nil); int(flows) < len(ref) || n == 0 {
		t.Errorf("%v flows counted in %d series, want the %d loopback flows", flows, n, len(ref))
	}
	for _, name := range []string{"netfilter_conntrack_events_filtered_total", "netfilter_conntrack_dump_entries_filtered_total"} {
		if got := mustValue(t, mfs, name, nil); got != 0 {
			t.Errorf("%s = %v, want 0: the installed example filters nothing", name, got)
		}
	}
	if got := matching(mfs, "netfilter_conntrack_filter_info", nil); len(got) != 0 {
		t.Errorf("netfilter_conntrack_filter_info has %d samples, want none: no filter is configured", len(got))
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
		// Until the first read, the series may be missing.
		got, ok := value(mfs, "netfilter_nfacct_packets_total", map[string]string{"name": "ipv4.http", "family": "ipv4", "service": "http"})
		if ok && got > 0 && got == ref["ipv4.http"][0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipv4.http: exporter %v packets (present %v), nfacct list %v", got, ok, ref["ipv4.http"])
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
			mustValue(t, mfs, "netfilter_nfacct_bytes_total", map[string]string{"name": fam + "." + svc, "family": fam, "service": svc})
		}
	}
	if ref["ipv4.total"][0] < ref["ipv4.http"][0] {
		t.Errorf("ipv4.total %v counts less than ipv4.http %v", ref["ipv4.total"], ref["ipv4.http"])
	}
}

// TestExampleNftablesRecipe checks the recipe with nft -c, loads it (twice:
// it must be reloadable) in a throwaway namespace, makes HTTP-port traffic
// there, and checks that the exporter shows every counter and the quota of
// the recipe as nft shows them.
func TestExampleNftablesRecipe(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := netnstest.New(t)
	ns.Run(t, "nft", "-c", "-f", "examples/nftables.nft")
	if out := ns.Run(t, "nft", "list", "ruleset"); out != "" {
		t.Fatalf("nft -c changed the ruleset:\n%s", out)
	}
	ns.Run(t, "nft", "-f", "examples/nftables.nft")
	ns.Run(t, "nft", "-f", "examples/nftables.nft")

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

	e := startExporter(t, "--netns="+ns.Path())
	_, mfs, counters, quotas := scrapeNft(t, e, ns)
	if len(counters) != 8 || len(quotas) != 2 {
		t.Errorf("nft shows %d counters and %d quotas, want 8 (3 services and a total, per family) and 2", len(counters), len(quotas))
	}
	for _, fam := range []string{"ip", "ip6"} {
		for _, svc := range []string{"http", "https", "dns", "total"} {
			mustValue(t, mfs, "netfilter_nftables_counter_bytes_total", map[string]string{"family": fam, "table": "accounting", "name": svc})
		}
		if v := mustValue(t, mfs, "netfilter_nftables_quota_info", map[string]string{"family": fam, "name": "web_budget", "mode": "over"}); v != 1 {
			t.Errorf("quota web_budget in %s with mode over: info = %v, want 1", fam, v)
		}
	}
	http := mustValue(t, mfs, "netfilter_nftables_counter_packets_total", map[string]string{"family": "ip", "name": "http"})
	total := mustValue(t, mfs, "netfilter_nftables_counter_packets_total", map[string]string{"family": "ip", "name": "total"})
	used := mustValue(t, mfs, "netfilter_nftables_quota_used_bytes", map[string]string{"family": "ip", "name": "web_budget"})
	httpBytes := mustValue(t, mfs, "netfilter_nftables_counter_bytes_total", map[string]string{"family": "ip", "name": "http"})
	if http == 0 || total < http || used != httpBytes {
		t.Errorf("ip accounting: http %v packets (%v bytes), total %v packets, web_budget used %v bytes; want http > 0, total >= http, and the quota to have used what http counted", http, httpBytes, total, used)
	}
}

// nonRootUser is the unprivileged user the tests run the exporter as
// (distroless's nonroot).
const nonRootUser = "65532:65532"

// TestNonRootWithNetAdmin runs the exporter as the systemd unit does
// (DynamicUser=, AmbientCapabilities=CAP_NET_ADMIN): as user 65532, with
// CAP_NET_ADMIN only, an ambient capability within a bounding set of
// CAP_NET_ADMIN alone; the binary has no file capability. Every collector
// must work.
func TestNonRootWithNetAdmin(t *testing.T) {
	netnstest.Require(t, "setpriv", "iptables", "sysctl", "nft")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, exporterName)
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ns := netnstest.New(t)
	netnstest.TrackConnections(t, ns)
	ns.Run(t, "nfacct", "add", "nonroot")
	ns.Run(t, "nft", "add table inet t; add counter inet t nonroot { packets 1 bytes 2 }")
	uid, gid, _ := strings.Cut(nonRootUser, ":")
	ns.Start(t, os.Stderr, "setpriv", "--reuid="+uid, "--regid="+gid, "--clear-groups",
		"--bounding-set=-all,+net_admin", "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", bin, "--web.listen-address=127.0.0.1:9862")
	body := waitMetrics(t, ns.HTTPClient(), "http://127.0.0.1:9862/metrics")
	for _, want := range []string{
		`netfilter_exporter_collector_success{collector="nfacct"} 1`,
		`netfilter_exporter_collector_success{collector="conntrack"} 1`,
		`netfilter_exporter_collector_success{collector="conntrack_stats"} 1`,
		`netfilter_exporter_collector_success{collector="nftables"} 1`,
		`netfilter_nfacct_bytes_total{name="nonroot"} 0`,
		`netfilter_nftables_counter_bytes_total{family="inet",name="nonroot",table="t"} 2`,
		`netfilter_conntrack_receive_buffer_bytes 1.34217728e+08`,
		// io_uring needs no capability: the image's user gets it too.
		`netfilter_conntrack_listener_info{method="io_uring"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("unprivileged exporter: /metrics lacks %s", want)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", findPid(t, bin)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "Uid:\t65532") || !strings.Contains(string(status), "CapEff:\t0000000000001000") {
		t.Errorf("the exporter does not run as 65532 with CAP_NET_ADMIN (0x1000) only:\n%s", status)
	}
}

// findPid returns the pid of the process running the executable path.
func findPid(t *testing.T, path string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == path {
			return pid
		}
	}
	t.Fatalf("no process runs %s", path)
	return 0
}

// TestExampleAlertRules runs promtool on the rules and their unit tests, and
// checks what promtool does not: every alert waits (for:, and a comment
// where it does not), says what and why (summary, description), links to
// its runbook section in docs/alerts.md, and is tested both firing and not.
func TestExampleAlertRules(t *testing.T) {
	netnstest.RequireTools(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "examples"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	raw := string(mustRead(t, "examples/alerts.yml"))
	var rules struct {
		Groups []struct {
			Rules []map[string]any
		}
	}
	if err := yaml.Unmarshal([]byte(raw), &rules); err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string
				ExpAlerts []any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		}
	}
	if err := yaml.Unmarshal(mustRead(t, "examples/alerts_test.yml"), &tests); err != nil {
		t.Fatal(err)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tt := range tests.Tests {
		for _, a := range tt.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	runbook := string(mustRead(t, "docs/alerts.md"))
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			name, _ := r["alert"].(string)
			if name == "" {
				continue
			}
			n++
			if _, ok := r["for"]; !ok {
				t.Errorf("%s has no for:", name)
			}
			ann, _ := r["annotations"].(map[string]any)
			for _, k := range []string{"summary", "description"} {
				if s, _ := ann[k].(string); len(s) < 20 {
					t.Errorf("%s: %s annotation %q says too little", name, k, s)
				}
			}
			anchor := "#" + strings.ToLower(name)
			if u, _ := ann["runbook_url"].(string); !strings.HasSuffix(u, "/docs/alerts.md"+anchor) {
				t.Errorf("%s: runbook_url %q does not point at docs/alerts.md%s", name, u, anchor)
			}
			if !strings.Contains(runbook, "\n## "+name+"\n") {
				t.Errorf("docs/alerts.md has no runbook section ## %s", name)
			}
			if !firing[name] || !quiet[name] {
				t.Errorf("%s is not tested both firing (%v) and not firing (%v) in alerts_test.yml", name, firing[name], quiet[name])
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts in alerts.yml")
	}
	// for: 0m is a choice that needs its reason.
	lines := strings.Split(raw, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "for: 0m" && (i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#")) {
			t.Errorf("alerts.yml line %d: for: 0m without a comment saying why", i+1)
		}
	}
}

// checkArgs runs the exporter with args, as given, and --config.check
// (unless they hold it already).
func checkArgs(t *testing.T, args []string) {
	t.Helper()
	args = append([]string{}, args...)
	if !slices.Contains(args, "--config.check") {
		args = append(args, "--config.check")
	}
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Errorf("%s %s --config.check: %v\n%s", exporterName, strings.Join(args, " "), err, out)
	}
}

// shellWords splits a shell command line into words, honouring single and
// double quotes (enough for the documentation's commands).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// documentedCommands returns the exporter arguments of every command in the
// sh blocks of a Markdown file that runs the exporter: directly
// (netfilter_exporter ..., ./netfilter_exporter ...), through make run
// ARGS='...', or as the image of docker run (an image reference
// netfilter_exporter:<tag>). Continuation lines are joined.
func documentedCommands(t *testing.T, path string) [][]string {
	t.Helper()
	var cmds [][]string
	inShell, cont := false, ""
	for _, line := range strings.Split(string(mustRead(t, path)), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inShell = strings.TrimSpace(line) == "```sh"
			continue
		}
		if !inShell {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		w := shellWords(line)
		switch {
		case len(w) == 0:
		case w[0] == exporterName || w[0] == "./"+exporterName:
			cmds = append(cmds, w[1:])
		case len(w) > 2 && w[0] == "make" && w[1] == "run":
			for _, a := range w[2:] {
				if v, ok := strings.CutPrefix(a, "ARGS="); ok {
					cmds = append(cmds, shellWords(v))
				}
			}
		case len(w) > 2 && w[0] == "docker" && w[1] == "run":
			for i, a := range w {
				if regexp.MustCompile(`(^|/)` + exporterName + `:[\w.-]+$`).MatchString(a) {
					cmds = append(cmds, w[i+1:])
				}
			}
		}
	}
	return cmds
}

// TestDocumentedCommands runs every exporter command of the README and of
// the pages of docs/ as written, with --config.check: every flag must
// exist and every file it names must be there. The paths mapped are where
// the README installs examples/config.yml, and --netns (to the exporter's
// own namespace).
func TestDocumentedCommands(t *testing.T) {
	total := 0
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in docs/ (%v)", err)
	}
	for _, doc := range append([]string{"README.md"}, pages...) {
		cmds := documentedCommands(t, doc)
		total += len(cmds)
		for _, args := range cmds {
			t.Logf("%s: %s %s", doc, exporterName, strings.Join(args, " "))
			for i, a := range args {
				args[i] = strings.Replace(a, "="+installedConfig, "=examples/config.yml", 1)
				// The namespace a command watches does not exist here:
				// the exporter's own stands in for it.
				if strings.HasPrefix(a, "--netns=") {
					args[i] = "--netns=/proc/self/ns/net"
				}
			}
			if slices.Contains(args, "--version") {
				if out, err := exec.Command(binary, args...).CombinedOutput(); err != nil {
					t.Errorf("%s: %s %s: %v\n%s", doc, exporterName, strings.Join(args, " "), err, out)
				}
				continue
			}
			checkArgs(t, args)
		}
	}
	if total < 10 {
		t.Errorf("found %d exporter commands in the documentation, want at least 10: is the parser still right?", total)
	}
}

// TestDemo runs make demo's script for a few seconds and checks that a
// newcomer sees live metrics and Graphite lines, and that nothing is left
// behind.
func TestDemo(t *testing.T) {
	netnstest.Require(t, "iptables", "nfacct", "conntrack", "sysctl", "python3")
	port := func() string { _, p, _ := net.SplitHostPort(freeAddr(t)); return p }
	cmd := exec.Command("./scripts/demo.sh")
	cmd.Env = append(os.Environ(), "BIN="+binary, "DEMO_DURATION=12", "DEMO_PORT="+port(), "DEMO_GRAPHITE_PORT="+port())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	// The demo's namespaces are named after its process: only those count
	// (other tests, or other demos, may have namespaces of their own).
	own := fmt.Sprintf("-%d\n", cmd.Process.Pid)
	for _, want := range []string{
		`metrics> netfilter_nfacct_packets_total{name="demo.http"}`,
		`metrics> netfilter_nfacct_bytes_total{name="demo.dns"}`,
		"graphite> netfilter.nfacct.demo.http.pkts ",
		"graphite> netfilter.conntrack.ipv4.tcp.80.flows ",
		"demo: cleaned up",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range strings.Split(string(list), "\n") {
		name, _, _ := strings.Cut(ns, " ")
		if strings.HasPrefix(name, "nfe-demo-") && strings.HasSuffix(name+"\n", own) {
			t.Errorf("demo left namespace %s behind", name)
		}
	}
}

// TestDemoCtrlC stops make demo's script as a terminal's Ctrl-C does (SIGINT
// to its whole process group): it must clean up and say so, with no Python
// traceback or other noise.
func TestDemoCtrlC(t *testing.T) {
	netnstest.Require(t, "iptables", "nfacct", "conntrack", "sysctl", "python3")
	port := func() string { _, p, _ := net.SplitHostPort(freeAddr(t)); return p }
	cmd := exec.Command("./scripts/demo.sh")
	cmd.Env = append(os.Environ(), "BIN="+binary, "DEMO_DURATION=0", "DEMO_PORT="+port(), "DEMO_GRAPHITE_PORT="+port())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	eventually(t, 30*time.Second, func() string {
		if !strings.Contains(out.String(), "metrics> ") {
			return "the demo shows no metrics yet:\n" + out.String()
		}
		return ""
	})
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Errorf("the demo exited with %v after Ctrl-C, want status 130", err)
	}
	text := out.String()
	// It cleaned up: none of its namespaces is left.
	own := fmt.Sprintf("-%d", cmd.Process.Pid)
	list, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range strings.Split(string(list), "\n") {
		name, _, _ := strings.Cut(ns, " ")
		if strings.HasPrefix(name, "nfe-demo-") && strings.HasSuffix(name, own) {
			t.Errorf("the demo left namespace %s behind after Ctrl-C", name)
		}
	}
	// Nothing but its own lines: no traceback, no warning of a process
	// that lost its peer.
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !strings.HasPrefix(l, "demo: ") && !strings.HasPrefix(l, "graphite> ") && !strings.HasPrefix(l, "metrics> ") {
			t.Errorf("the demo printed %q on Ctrl-C:\n%s", l, text)
			break
		}
	}
}

// TestWithoutPrivilegesCollectorsFailAlone runs the exporter as an
// unprivileged user without capabilities: every netfilter collector fails
// (EPERM), yet the exporter starts, serves /metrics and says which failed.
func TestWithoutPrivilegesCollectorsFailAlone(t *testing.T) {
	netnstest.Require(t, "setpriv")
	addr := freeAddr(t)
	cmd := exec.Command("setpriv", "--reuid=65532", "--regid=65532", "--clear-groups",
		"--bounding-set=-all", "--inh-caps=-all", binary, "--web.listen-address="+addr)
	log := &lockedBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	body := waitMetrics(t, http.DefaultClient, "http://"+addr+"/metrics")
	for _, want := range []string{
		`netfilter_exporter_collector_success{collector="nfacct"} 0`,
		`netfilter_exporter_collector_success{collector="conntrack"} 0`,
		`netfilter_exporter_collector_success{collector="conntrack_stats"} 0`,
		`netfilter_exporter_collector_success{collector="nftables"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s\nlog:\n%s", want, log.String())
		}
	}
	if !strings.Contains(log.String(), "operation not permitted") {
		t.Errorf("the log does not say why the collectors fail:\n%s", log.String())
	}
	// Not ready while every collector fails, and the body says why, in
	// words an operator acts on: the capability that is missing.
	resp, err := http.Get("http://" + addr + "/-/ready")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/-/ready answered %d without CAP_NET_ADMIN, want 503:\n%s", resp.StatusCode, b)
	}
	for _, name := range []string{"conntrack", "conntrack_stats", "nfacct", "nftables"} {
		want := "- " + name + ": "
		i := strings.Index(string(b), want)
		if i < 0 {
			t.Errorf("/-/ready does not name %s:\n%s", name, b)
			continue
		}
		line, _, _ := strings.Cut(string(b[i:]), "\n")
		if !strings.Contains(line, "(it needs CAP_NET_ADMIN)") {
			t.Errorf("/-/ready's reason for %s does not name the capability: %q", name, line)
		}
	}
}

// waitMetrics returns the body of the first successful GET of url within
// 10 seconds, for an exporter that is still starting.
func waitMetrics(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	var body string
	eventually(t, 10*time.Second, func() string {
		resp, err := c.Get(url)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return ""
	})
	return body
}

// logAndDropRule is what one logging rule of a log-and-drop example
// counted, by its own counter.
type logAndDropRule struct {
	group, prefix  string
	packets, bytes float64
}

// checkLogAndDrop sends a peer's traffic into firewall namespace fw, whose
// policy an example loaded (the peer is 192.0.2.1, fw 192.0.2.2): SSH
// connections (accepted and logged to group 1), UDP datagrams to a closed
// port (dropped by the policy and logged to group 2) and SYN+FIN segments
// (invalid, logged to group 2 and dropped). An exporter counting groups 1
// and 2 must then show, for each logging rule that rules returns, exactly
// what the rule counted; with --nflog.conntrack-invalid, the SYN+FIN
// segments by their reason.
func checkLogAndDrop(t *testing.T, peer, fw *netnstest.NS, rules func() []logAndDropRule) {
	t.Helper()
	ssh := fw.Listen(t, "tcp4", ":22")
	go func() {
		for {
			c, err := ssh.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	e := startExporter(t, "--netns="+fw.Path(), "--collector.disable-defaults", "--nflog.group=1", "--nflog.group=2", "--nflog.conntrack-invalid")
	eventually(t, 10*time.Second, func() string {
		if _, mfs := e.scrape(t); mustValue(t, mfs, "netfilter_nflog_listener_up", nil) != 1 {
			return "the nflog listener is not up"
		}
		return ""
	})
	for range 3 {
		c := peer.Dial(t, "tcp4", "192.0.2.2:22")
		c.Close()
	}
	udp := peer.Dial(t, "udp4", "192.0.2.2:9999")
	for range 4 {
		if _, err := udp.Write([]byte("refused")); err != nil {
			t.Fatal(err)
		}
	}
	netnstest.SendTCPFlags(t, peer, "192.0.2.1", "192.0.2.2", 80, 0x03, 5)
	var want []logAndDropRule
	eventually(t, 30*time.Second, func() string {
		want = rules()
		_, mfs := e.scrape(t)
		diff := ""
		for _, r := range want {
			labels := map[string]string{"group": r.group, "prefix": r.prefix}
			p, _ := value(mfs, "netfilter_nflog_packets_total", labels)
			b, _ := value(mfs, "netfilter_nflog_bytes_total", labels)
			if p != r.packets || b != r.bytes || r.packets == 0 {
				diff += fmt.Sprintf("\ngroup %s prefix %q: /metrics %v packets %v bytes, the rule %v and %v", r.group, r.prefix, p, b, r.packets, r.bytes)
			}
		}
		if n, _ := value(mfs, "netfilter_conntrack_invalid_packets_total",
			map[string]string{"family": "ipv4", "proto": "tcp", "reason": "invalid tcp flag combination", "direction": "in"}); n != 5 {
			diff += fmt.Sprintf("\n%v invalid tcp flag combination, want the 5 SYN+FIN segments", n)
		}
		if lost, _ := sum(mfs, "netfilter_nflog_packets_lost_total", nil); lost != 0 {
			diff += fmt.Sprintf("\n%v lost", lost)
		}
		return diff
	})
	t.Logf("the exporter counted what the rules did: %+v", want)
}

// TestExampleNftablesLogAndDrop checks the nftables log-and-drop policy
// with nft -c, loads it twice (it must be reloadable) in a firewall
// namespace, and checks the exporter's counts against the rules' named
// counters.
func TestExampleNftablesLogAndDrop(t *testing.T) {
	netnstest.Require(t, "nft")
	peer, fw := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, peer, fw, "192.0.2.1/24", "192.0.2.2/24")
	const file = "examples/nftables-log-and-drop.nft"
	fw.Run(t, "nft", "-c", "-f", file)
	if out := fw.Run(t, "nft", "list", "ruleset"); out != "" {
		t.Fatalf("nft -c changed the ruleset:\n%s", out)
	}
	fw.Run(t, "nft", "-f", file)
	fw.Run(t, "nft", "-f", file)
	checkLogAndDrop(t, peer, fw, func() []logAndDropRule {
		by := map[string]netnstest.NftCounter{}
		for _, c := range netnstest.NftCounters(t, fw) {
			by[c.Name] = c
		}
		var rules []logAndDropRule
		for _, r := range []struct{ group, prefix, counter string }{
			{"1", "SSH Attempt", "ssh_attempts"}, {"2", "Input Invalid", "invalid"}, {"2", "Input Default DROP", "default_drop"},
		} {
			c, ok := by[r.counter]
			if !ok {
				t.Fatalf("%s has no counter %s", file, r.counter)
			}
			rules = append(rules, logAndDropRule{r.group, r.prefix, float64(c.Packets), float64(c.Bytes)})
		}
		return rules
	})
}

// iptablesNflogRule finds the NFLOG rules of iptables-save -c output.
var iptablesNflogRule = regexp.MustCompile(`(?m)^\[(\d+):(\d+)\] -A INPUT .*-j NFLOG --nflog-prefix "?(.*?)"? --nflog-group (\d+)$`)

// TestExampleIptablesLogAndDrop checks the iptables log-and-drop policy
// with iptables-restore --test, loads it twice in a firewall namespace,
// and checks the exporter's counts against each NFLOG rule's counter.
func TestExampleIptablesLogAndDrop(t *testing.T) {
	netnstest.Require(t, "iptables", "iptables-restore", "iptables-save")
	peer, fw := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, peer, fw, "192.0.2.1/24", "192.0.2.2/24")
	const file = "examples/iptables-log-and-drop.rules"
	restore := func(args ...string) {
		t.Helper()
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command("ip", append([]string{"netns", "exec", fw.Name, "iptables-restore"}, args...)...)
		cmd.Stdin = f
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("iptables-restore %s < %s: %v\n%s", strings.Join(args, " "), file, err, out)
		}
	}
	restore("--test")
	if out := fw.Run(t, "iptables-save"); strings.Contains(out, "-A INPUT") {
		t.Fatalf("iptables-restore --test changed the rules:\n%s", out)
	}
	restore()
	restore()
	checkLogAndDrop(t, peer, fw, func() []logAndDropRule {
		var rules []logAndDropRule
		for _, m := range iptablesNflogRule.FindAllStringSubmatch(fw.Run(t, "iptables-save", "-c"), -1) {
			p, _ := strconv.ParseFloat(m[1], 64)
			b, _ := strconv.ParseFloat(m[2], 64)
			rules = append(rules, logAndDropRule{m[4], m[3], p, b})
		}
		if len(rules) != 3 {
			t.Fatalf("%d NFLOG rules in iptables-save -c, want 3: %v", len(rules), rules)
		}
		return rules
	})
}
