package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// The dashboards of examples/, as far as the tests read them.
const (
	promDashboard     = "examples/grafana-dashboard.json"
	graphiteDashboard = "examples/grafana-dashboard-graphite.json"
)

type grafanaRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaTarget struct {
	Datasource   grafanaRef `json:"datasource"`
	Expr         string     `json:"expr"`   // Prometheus
	Target       string     `json:"target"` // Graphite
	Format       string     `json:"format"`
	LegendFormat string     `json:"legendFormat"`
	RefID        string     `json:"refId"`
}

type grafanaPanel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  grafanaRef      `json:"datasource"`
	Targets     []grafanaTarget `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Options struct {
		Calculate *bool `json:"calculate"`
		YAxis     struct {
			Unit string `json:"unit"`
		} `json:"yAxis"`
		CellValues struct {
			Unit string `json:"unit"`
		} `json:"cellValues"`
	} `json:"options"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

type grafanaVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Refresh    int             `json:"refresh"`
	Options    []struct {
		Value string `json:"value"`
	} `json:"options"`
}

type grafanaDashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	Requires []struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	} `json:"__requires"`
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Editable   *bool  `json:"editable"`
	Templating struct {
		List []grafanaVar `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

func loadDashboard(t *testing.T, path string) *grafanaDashboard {
	t.Helper()
	var d grafanaDashboard
	if err := json.Unmarshal(mustRead(t, path), &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &d
}

// panels returns every panel that is not a row, rows' own panels included.
func (d *grafanaDashboard) panels() []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

func (d *grafanaDashboard) variable(name string) *grafanaVar {
	for i := range d.Templating.List {
		if d.Templating.List[i].Name == name {
			return &d.Templating.List[i]
		}
	}
	return nil
}

// varQuery returns a query variable's query, whether Grafana stored it as a
// string or as an object.
func (v *grafanaVar) varQuery() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

// checkImportable checks what Grafana's import and the dashboard linter's
// rules want of both dashboards: import metadata, a data source variable
// every panel and target uses, and a title, description and unit on every
// panel.
func checkImportable(t *testing.T, path string, d *grafanaDashboard, plugin string) {
	t.Helper()
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: no uid or title", path)
	}
	// The dashboard linter's "editable" rule: a provisioned dashboard is
	// not edited in place.
	if d.Editable == nil || *d.Editable {
		t.Errorf("%s: editable is not false", path)
	}
	input := ""
	for _, in := range d.Inputs {
		if in.Type == "datasource" && in.PluginID == plugin {
			input = in.Name
		}
	}
	if input == "" {
		t.Errorf("%s: __inputs has no %s data source", path, plugin)
	}
	required := map[string]bool{}
	for _, r := range d.Requires {
		required[r.Type+"/"+r.ID] = true
	}
	for _, want := range []string{"grafana/grafana", "datasource/" + plugin} {
		if !required[want] {
			t.Errorf("%s: __requires lacks %s", path, want)
		}
	}
	ds := d.variable("datasource")
	if ds == nil || ds.Type != "datasource" || ds.varQuery() != plugin {
		t.Fatalf("%s: no datasource variable of type %s", path, plugin)
	}
	ps := d.panels()
	if len(ps) < 8 {
		t.Errorf("%s has %d panels", path, len(ps))
	}
	for _, p := range ps {
		if !required["panel/"+p.Type] {
			t.Errorf("%s: panel type %s of %q is not in __requires", path, p.Type, p.Title)
		}
		if p.Title == "" || len(p.Description) < 30 {
			t.Errorf("%s: panel %q has no description", path, p.Title)
		}
		if p.Datasource != (grafanaRef{Type: plugin, UID: "${datasource}"}) {
			t.Errorf("%s: panel %q uses data source %+v, not ${datasource}", path, p.Title, p.Datasource)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("%s: panel %q has no unit", path, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", path, p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != p.Datasource {
				t.Errorf("%s: a query of %q uses data source %+v", path, p.Title, tg.Datasource)
			}
		}
	}
}

// metricSelector finds the metric selectors of the exporter's families in
// a PromQL expression.
var metricSelector = regexp.MustCompile(`\b((?:netfilter|process|go)_[a-z_]+)(\{[^}]*\})?`)

// TestExampleGrafanaDashboard checks the Prometheus dashboard without a
// Prometheus: import metadata, job and instance variables used by every
// selector, $__rate_interval in every rate, the heatmap's format, and every
// query parsed by promtool. TestEndToEndPrometheusAndCarbon runs the
// queries against a real Prometheus.
func TestExampleGrafanaDashboard(t *testing.T) {
	netnstest.RequireTools(t, "promtool")
	d := loadDashboard(t, promDashboard)
	checkImportable(t, promDashboard, d, "prometheus")
	for _, name := range []string{"job", "instance"} {
		v := d.variable(name)
		if v == nil {
			t.Fatalf("no %s variable", name)
		}
		if v.Type != "query" || !v.Multi || !v.IncludeAll || v.AllValue != ".+" || v.Refresh != 2 {
			t.Errorf("variable %s %+v: want a query, multi, with All as .+, refreshed on time range change", name, v)
		}
		if !strings.Contains(v.varQuery(), ", "+name+")") {
			t.Errorf("variable %s queries %q", name, v.varQuery())
		}
	}
	if q := d.variable("instance").varQuery(); !strings.Contains(q, `job=~"$job"`) {
		t.Errorf("the instance variable %q does not follow $job", q)
	}
	var exprs []string
	used := map[string]bool{}
	heatmap, stats := false, 0
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, m := range metricSelector.FindAllStringSubmatch(tg.Expr, -1) {
				used[strings.TrimSuffix(m[1], "_bucket")] = true
				if !strings.Contains(m[2], `job=~"$job"`) || !strings.Contains(m[2], `instance=~"$instance"`) {
					t.Errorf("panel %q: %s%s does not select job=~\"$job\" and instance=~\"$instance\"", p.Title, m[1], m[2])
				}
			}
			if regexp.MustCompile(`\[\d+[smhd]\]`).MatchString(tg.Expr) {
				t.Errorf("panel %q: %s has a fixed range; use $__rate_interval", p.Title, tg.Expr)
			}
			if p.Type == "heatmap" && tg.Format != "heatmap" {
				t.Errorf("heatmap %q: query format %q, want heatmap", p.Title, tg.Format)
			}
		}
		if p.Type == "heatmap" {
			heatmap = true
			if p.Options.Calculate == nil || *p.Options.Calculate {
				t.Errorf("heatmap %q calculates buckets itself; the query gives them (calculate: false)", p.Title)
			}
			// The axis is the bucket (a duration), a cell a rate.
			if p.Options.YAxis.Unit != "s" || p.Options.CellValues.Unit != "ops" {
				t.Errorf("heatmap %q: axis unit %q and cell unit %q, want s and ops", p.Title, p.Options.YAxis.Unit, p.Options.CellValues.Unit)
			}
		}
		if p.Type == "stat" {
			stats++
		}
	}
	if !heatmap {
		t.Error("no heatmap panel for flow durations")
	}
	if stats < 4 {
		t.Errorf("%d stat panels, want the headline numbers (traffic, flows, table use, losses, failures) as stats", stats)
	}
	for _, want := range []string{"netfilter_conntrack_flow_bytes_total", "netfilter_conntrack_flows_total",
		"netfilter_conntrack_flows_active", "netfilter_conntrack_flow_duration_seconds", "netfilter_nfacct_bytes_total",
		"netfilter_nfacct_quota_bytes", "netfilter_exporter_collector_success", "netfilter_conntrack_events_lost_total",
		"netfilter_conntrack_destroy_events_total", "netfilter_conntrack_entries",
		"netfilter_nftables_counter_bytes_total", "netfilter_nftables_quota_used_bytes",
		"netfilter_nftables_quota_limit_bytes", "netfilter_nftables_quota_exhausted",
		"netfilter_nflog_packets_total", "netfilter_nflog_bytes_total", "netfilter_nflog_packets_lost_total",
		"netfilter_conntrack_invalid_packets_total",
		"netfilter_conntrack_top_bytes", "netfilter_conntrack_top_window_seconds"} {
		if !used[want] {
			t.Errorf("no dashboard query uses %s", want)
		}
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		fmt.Fprintf(&rules, "      - record: dashboard_query_%d\n        expr: %q\n", i, dashboardVars(d, "5m").Replace(e))
	}
	file := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("a dashboard query does not parse: %v\n%s", err, out)
	}
}

// dashboardVars substitutes the dashboard's variables as Grafana would for
// job netfilter, every instance, and the group_by variable's default.
func dashboardVars(d *grafanaDashboard, rateInterval string) *strings.Replacer {
	return strings.NewReplacer("$__rate_interval", rateInterval, "$__interval", "1s", "$__range", "1h",
		"$group_by", "proto", "$job", "netfilter", "$instance", ".+")
}

// TestExampleGraphiteDashboard checks the Graphite dashboard without
// Graphite: import metadata, a prefix variable in every target, and targets
// for the paths of every collector. TestEndToEndPrometheusAndCarbon matches
// its targets against the paths a real carbon-cache wrote.
func TestExampleGraphiteDashboard(t *testing.T) {
	d := loadDashboard(t, graphiteDashboard)
	checkImportable(t, graphiteDashboard, d, "graphite")
	if v := d.variable("prefix"); v == nil || v.varQuery() != "netfilter" {
		t.Error("no prefix variable defaulting to netfilter, the default --graphite.prefix")
	}
	var patterns []string
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			if len(graphitePatterns(tg.Target)) == 0 {
				t.Errorf("panel %q: target %q reads no $prefix path", p.Title, tg.Target)
			}
			if strings.Count(tg.Target, "(") != strings.Count(tg.Target, ")") {
				t.Errorf("panel %q: unbalanced parentheses in %q", p.Title, tg.Target)
			}
			for _, pat := range graphitePatterns(tg.Target) {
				patterns = append(patterns, strings.Replace(pat, "$prefix", "netfilter", 1))
			}
		}
	}
	// Paths as the README documents them.
	for _, want := range []string{"netfilter.nfacct.ipv4.http.bytes", "netfilter.nfacct.web.quota_bytes",
		"netfilter.nfacct.web.bytes", "netfilter.nfacct.site.a.ipv6.dns.pkts", "netfilter.nfacct.site.a.ipv6.dns.over_quota",
		"netfilter.nftables.inet.filter.web.bytes", "netfilter.nftables.inet.filter.web.pkts",
		"netfilter.nftables.inet.filter.web.quota.limit", "netfilter.nftables.inet.filter.web.quota.exhausted",
		"netfilter.conntrack.ipv4.tcp.443.orig.bytes", "netfilter.conntrack.ipv4.tcp.443.flows",
		"netfilter.conntrack_stats.entries", "netfilter.exporter.collector.nftables.success",
		"netfilter.nflog.5.SSH%20Attempt.pkts", "netfilter.exporter.nflog.lost.5",
		"netfilter.conntrack.invalid.ipv4.tcp.invalid%20tcp%20flag%20combination.in"} {
		found := false
		for _, pat := range patterns {
			found = found || graphiteMatch(pat, want)
		}
		if !found {
			t.Errorf("no Graphite dashboard target reads %s", want)
		}
	}
}

// graphitePatterns returns the path patterns of a Graphite target that
// start with $prefix: up to a parenthesis, quote, space or a comma outside
// braces.
func graphitePatterns(target string) []string {
	var out []string
	for rest := target; ; {
		i := strings.Index(rest, "$prefix.")
		if i < 0 {
			return out
		}
		rest = rest[i:]
		depth, end := 0, len(rest)
	scan:
		for j, r := range rest {
			switch {
			case r == '{':
				depth++
			case r == '}':
				depth--
			case r == ',' && depth == 0, strings.ContainsRune("()'\" ", r):
				end = j
				break scan
			}
		}
		out = append(out, rest[:end])
		rest = rest[end:]
	}
}

// graphiteMatch reports whether a dotted path matches a Graphite pattern:
// node by node, with *, ?, [...] and {a,b}, and ** for any number of nodes
// (none included), as graphite-web's standard finder matches since 1.0.
func graphiteMatch(pattern, p string) bool {
	return matchNodes(strings.Split(pattern, "."), strings.Split(p, "."))
}

func matchNodes(pn, sn []string) bool {
	if i := slices.Index(pn, "**"); i >= 0 {
		if len(sn) < i || !matchNodes(pn[:i], sn[:i]) {
			return false
		}
		for skip := 0; i+skip <= len(sn); skip++ {
			if matchNodes(pn[i+1:], sn[i+skip:]) {
				return true
			}
		}
		return false
	}
	if len(pn) != len(sn) {
		return false
	}
	for i := range pn {
		alts := []string{pn[i]}
		if m := regexp.MustCompile(`^(.*)\{([^}]*)\}(.*)$`).FindStringSubmatch(pn[i]); m != nil {
			alts = nil
			for _, a := range strings.Split(m[2], ",") {
				alts = append(alts, m[1]+a+m[3])
			}
		}
		ok := false
		for _, a := range alts {
			if matched, _ := path.Match(a, sn[i]); matched {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// whisperPaths returns the dotted paths of every whisper file under dir,
// tagged series left out.
func whisperPaths(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() && rel == "_tagged" {
			return filepath.SkipDir
		}
		if !e.IsDir() && strings.HasSuffix(rel, ".wsp") {
			out = append(out, strings.ReplaceAll(strings.TrimSuffix(rel, ".wsp"), string(filepath.Separator), "."))
		}
		return nil
	})
	return out
}

// applyByNodeRE finds applyByNode(pattern, node, "template") calls.
var applyByNodeRE = regexp.MustCompile(`applyByNode\(([^,]+), (-?\d+), "([^"]*)"\)`)

// checkGraphiteDashboard matches every target of the Graphite dashboard,
// with the default prefix, against the whisper files carbon wrote under
// whisperDir: each pattern must match at least one, and each path an
// applyByNode template builds from them must exist.
func checkGraphiteDashboard(t *testing.T, whisperDir string) {
	t.Helper()
	d := loadDashboard(t, graphiteDashboard)
	prefix := d.variable("prefix").varQuery()
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			eventually(t, 30*time.Second, func() string {
				paths := whisperPaths(t, whisperDir)
				for _, pat := range graphitePatterns(tg.Target) {
					pat = strings.Replace(pat, "$prefix", prefix, 1)
					var matched []string
					for _, wp := range paths {
						if graphiteMatch(pat, wp) {
							matched = append(matched, wp)
						}
					}
					if len(matched) == 0 {
						return fmt.Sprintf("Graphite panel %q: %s matches none of the %d paths carbon wrote", p.Title, pat, len(paths))
					}
					// An nfacct panel shows every object, whatever the
					// number of dots in its name: the panel's patterns
					// with this leaf, together, match every such path.
					if head := prefix + ".nfacct."; strings.HasPrefix(pat, head) {
						leaf := pat[strings.LastIndexByte(pat, '.'):]
						var siblings []string
						for _, tg2 := range p.Targets {
							for _, pat2 := range graphitePatterns(tg2.Target) {
								if pat2 = strings.Replace(pat2, "$prefix", prefix, 1); strings.HasSuffix(pat2, leaf) {
									siblings = append(siblings, pat2)
								}
							}
						}
						for _, wp := range paths {
							if strings.HasPrefix(wp, head) && strings.HasSuffix(wp, leaf) &&
								!slices.ContainsFunc(siblings, func(pat2 string) bool { return graphiteMatch(pat2, wp) }) {
								return fmt.Sprintf("Graphite panel %q: no target matches %s", p.Title, wp)
							}
						}
					}
					for _, m := range applyByNodeRE.FindAllStringSubmatch(tg.Target, -1) {
						if strings.Replace(m[1], "$prefix", prefix, 1) != pat {
							continue
						}
						node, _ := strconv.Atoi(m[2])
						for _, wp := range matched {
							nodes := strings.Split(wp, ".")
							end := node + 1
							if node < 0 {
								end = len(nodes) + node + 1
							}
							// Paths of the template, not names in quotes. As
							// graphite-web does, every % of the template, and
							// only of the template, is the node's path, which
							// may hold a %XX escape of its own; a path ends at
							// a byte no element holds (README, Graphite paths).
							built := regexp.MustCompile(`'[^']*'`).ReplaceAllString(strings.ReplaceAll(m[3], "%", strings.Join(nodes[:end], ".")), "")
							for _, want := range regexp.MustCompile(regexp.QuoteMeta(prefix)+`\.[^\s(),'"|]+`).FindAllString(built, -1) {
								found := false
								for _, wp2 := range paths {
									found = found || wp2 == want
								}
								if !found {
									return fmt.Sprintf("Graphite panel %q: %s builds %s, which carbon has not written", p.Title, tg.Target, want)
								}
							}
						}
					}
				}
				return ""
			})
		}
	}
}

// promRange runs a range query from start to now at a step of one second
// and returns the number of series in the answer.
func promRange(t *testing.T, ns *netnstest.NS, query string, start time.Time) (int, error) {
	t.Helper()
	u := fmt.Sprintf("http://127.0.0.1:9090/api/v1/query_range?query=%s&start=%d&end=%d&step=1",
		url.QueryEscape(query), start.Unix(), time.Now().Unix())
	resp, err := ns.HTTPClient().Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct {
			Result []json.RawMessage
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	return len(r.Data.Result), nil
}

// checkPrometheusDashboard runs the dashboard against the Prometheus of the
// end-to-end test, which scrapes one exporter as job netfilter: the job and
// instance variables must list them, and every query of every panel must
// return data for the time since start.
func checkPrometheusDashboard(t *testing.T, ns *netnstest.NS, start time.Time) {
	t.Helper()
	d := loadDashboard(t, promDashboard)
	for name, want := range map[string]string{"job": "netfilter", "instance": "127.0.0.1:9862"} {
		m := regexp.MustCompile(`^label_values\((.*), (\w+)\)$`).FindStringSubmatch(d.variable(name).varQuery())
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(selector, label)", name, d.variable(name).varQuery())
		}
		selector := strings.ReplaceAll(m[1], "$job", "netfilter")
		u := "http://127.0.0.1:9090/api/v1/label/" + m[2] + "/values?match[]=" + url.QueryEscape(selector)
		eventually(t, 30*time.Second, func() string {
			resp, err := ns.HTTPClient().Get(u)
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			var r struct{ Data []string }
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				return err.Error()
			}
			for _, v := range r.Data {
				if v == want {
					return ""
				}
			}
			return fmt.Sprintf("variable %s lists %q, want %s", name, r.Data, want)
		})
	}
	vars := dashboardVars(d, "5s")
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			q := vars.Replace(tg.Expr)
			eventually(t, 30*time.Second, func() string {
				n, err := promRange(t, ns, q, start)
				if err != nil || n == 0 {
					return fmt.Sprintf("panel %q: %s returns no data from Prometheus (%v)", p.Title, q, err)
				}
				return ""
			})
		}
	}
}

func TestGraphiteMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"n.nfacct.*.bytes", "n.nfacct.web.bytes", true},
		{"n.nfacct.*.bytes", "n.nfacct.ipv4.http.bytes", false},
		{"n.nfacct.**.bytes", "n.nfacct.web.bytes", true},
		{"n.nfacct.**.bytes", "n.nfacct.ipv4.http.bytes", true},
		{"n.nfacct.**.bytes", "n.nfacct.site.a.ipv6.dns.bytes", true},
		{"n.nfacct.**.bytes", "n.nfacct.bytes", true},
		{"n.nfacct.**.bytes", "n.nfacct.web.quota_bytes", false},
		{"n.nfacct.**.bytes", "n.nftables.inet.filter.web.bytes", false},
		{"n.conntrack.*.*.*.{orig,reply}.bytes", "n.conntrack.ipv4.tcp.443.reply.bytes", true},
		{"n.conntrack.*.*.*.{orig,reply}.bytes", "n.conntrack.ipv4.tcp.443.flows", false},
	} {
		if got := graphiteMatch(tc.pattern, tc.path); got != tc.want {
			t.Errorf("graphiteMatch(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}
