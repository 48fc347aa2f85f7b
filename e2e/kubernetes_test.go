package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/alecthomas/units"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// The Kubernetes API fields the example uses, named and nested as the API
// defines them (core/v1, apps/v1, monitoring.coreos.com/v1). Documents are
// decoded strictly: a field that is not here, misspelt or misplaced, fails
// the test, as kubectl's strict field validation would refuse it.
type (
	k8sMeta struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	k8sSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	k8sHTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	}
	k8sProbe struct {
		HTTPGet             *k8sHTTPGet `yaml:"httpGet"`
		InitialDelaySeconds int         `yaml:"initialDelaySeconds"`
		PeriodSeconds       int         `yaml:"periodSeconds"`
		TimeoutSeconds      int         `yaml:"timeoutSeconds"`
		FailureThreshold    int         `yaml:"failureThreshold"`
	}
	k8sSeccomp struct {
		Type             string `yaml:"type"`
		LocalhostProfile string `yaml:"localhostProfile"`
	}
	k8sContainerSecurity struct {
		RunAsUser                *int64      `yaml:"runAsUser"`
		RunAsGroup               *int64      `yaml:"runAsGroup"`
		RunAsNonRoot             *bool       `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool       `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool       `yaml:"readOnlyRootFilesystem"`
		Privileged               *bool       `yaml:"privileged"`
		SeccompProfile           *k8sSeccomp `yaml:"seccompProfile"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	}
	k8sEnv struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			ResourceFieldRef *struct {
				Resource string `yaml:"resource"`
				Divisor  string `yaml:"divisor"`
			} `yaml:"resourceFieldRef"`
		} `yaml:"valueFrom"`
	}
	k8sContainer struct {
		Name            string   `yaml:"name"`
		Image           string   `yaml:"image"`
		ImagePullPolicy string   `yaml:"imagePullPolicy"`
		Args            []string `yaml:"args"`
		Env             []k8sEnv `yaml:"env"`
		Ports           []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		SecurityContext k8sContainerSecurity `yaml:"securityContext"`
		Resources       struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
		ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		StartupProbe   *k8sProbe `yaml:"startupProbe"`
		VolumeMounts   []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	k8sPodSpec struct {
		HostNetwork                  bool   `yaml:"hostNetwork"`
		DNSPolicy                    string `yaml:"dnsPolicy"`
		AutomountServiceAccountToken *bool  `yaml:"automountServiceAccountToken"`
		EnableServiceLinks           *bool  `yaml:"enableServiceLinks"`
		PriorityClassName            string `yaml:"priorityClassName"`
		Tolerations                  []struct {
			Operator string `yaml:"operator"`
			Key      string `yaml:"key"`
			Effect   string `yaml:"effect"`
		} `yaml:"tolerations"`
		SecurityContext struct {
			SeccompProfile *k8sSeccomp `yaml:"seccompProfile"`
		} `yaml:"securityContext"`
		Containers []k8sContainer `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
		} `yaml:"volumes"`
	}
	k8sDaemonSetSpec struct {
		Selector       k8sSelector `yaml:"selector"`
		UpdateStrategy struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxUnavailable int `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"updateStrategy"`
		Template struct {
			Metadata k8sMeta    `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	}
	k8sPodMonitorSpec struct {
		Selector            k8sSelector `yaml:"selector"`
		PodMetricsEndpoints []struct {
			Port          string `yaml:"port"`
			Path          string `yaml:"path"`
			Interval      string `yaml:"interval"`
			ScrapeTimeout string `yaml:"scrapeTimeout"`
			Relabelings   []struct {
				SourceLabels []string `yaml:"sourceLabels"`
				TargetLabel  string   `yaml:"targetLabel"`
			} `yaml:"relabelings"`
		} `yaml:"podMetricsEndpoints"`
	}
)

// k8sHead is what every document starts with.
type k8sHead struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

// k8sDocs are the example's documents by kind.
type k8sDocs struct {
	configMap struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   k8sMeta           `yaml:"metadata"`
		Data       map[string]string `yaml:"data"`
	}
	daemonSet struct {
		APIVersion string           `yaml:"apiVersion"`
		Kind       string           `yaml:"kind"`
		Metadata   k8sMeta          `yaml:"metadata"`
		Spec       k8sDaemonSetSpec `yaml:"spec"`
	}
	podMonitor struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   k8sMeta           `yaml:"metadata"`
		Spec       k8sPodMonitorSpec `yaml:"spec"`
	}
}

// parseK8s decodes every document of path strictly.
func parseK8s(t *testing.T, path string) *k8sDocs {
	t.Helper()
	var docs k8sDocs
	seen := map[string]bool{}
	for i, part := range regexp.MustCompile(`(?m)^---$`).Split(string(mustRead(t, path)), -1) {
		var head k8sHead
		if err := yaml.Unmarshal([]byte(part), &head); err != nil {
			t.Fatalf("%s: document %d: %v", path, i+1, err)
		}
		var dst any
		want := ""
		switch head.Kind {
		case "ConfigMap":
			dst, want = &docs.configMap, "v1"
		case "DaemonSet":
			dst, want = &docs.daemonSet, "apps/v1"
		case "PodMonitor":
			dst, want = &docs.podMonitor, "monitoring.coreos.com/v1"
		default:
			t.Fatalf("%s: document %d: kind %q is not checked by this test", path, i+1, head.Kind)
		}
		if head.APIVersion != want {
			t.Errorf("%s: %s has apiVersion %q, want %q", path, head.Kind, head.APIVersion, want)
		}
		d := yaml.NewDecoder(strings.NewReader(part))
		d.KnownFields(true)
		if err := d.Decode(dst); err != nil {
			t.Fatalf("%s: %s: %v", path, head.Kind, err)
		}
		seen[head.Kind] = true
	}
	for _, k := range []string{"ConfigMap", "DaemonSet", "PodMonitor"} {
		if !seen[k] {
			t.Fatalf("%s has no %s", path, k)
		}
	}
	return &docs
}

// measuredPeakRSS is the highest peak resident set measured for the
// exporter with the DaemonSet's configuration and a full 262,144-entry
// table (BENCHMARKS.md, "Memory of a node's exporter": 66.0 MB).
const measuredPeakRSS units.Base2Bytes = 66_000_000

// TestExampleKubernetes checks the manifest as a security reviewer would,
// and that the exporter accepts its arguments and its config map.
func TestExampleKubernetes(t *testing.T) {
	docs := parseK8s(t, "examples/daemonset.yaml")
	ds := docs.daemonSet
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("the pod does not use the node's network namespace (hostNetwork)")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: the exporter never talks to the API server")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	seccomp := pod.SecurityContext.SeccompProfile
	if c.SecurityContext.SeccompProfile != nil {
		seccomp = c.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		t.Errorf("seccomp profile %+v, want RuntimeDefault", seccomp)
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the DaemonSet's selector %s=%s does not match its pods", k, v)
		}
	}

	// The image: a registry of one's own, a release tag, no re-pull.
	newest := regexp.MustCompile(`(?m)^## (\d+\.\d+\.\d+) / `).FindSubmatch(mustRead(t, "CHANGELOG.md"))
	if newest == nil {
		t.Fatal("CHANGELOG.md names no release")
	}
	m := regexp.MustCompile(`^([a-z0-9.-]+\.[a-z]+(?::\d+)?)/[a-z0-9_/.-]+:([0-9][0-9A-Za-z.-]*)(@sha256:[0-9a-f]{64})?$`).FindStringSubmatch(c.Image)
	if m == nil {
		t.Errorf("image %q: want registry.host/name:version (a bare name resolves to a public registry; no latest)", c.Image)
	} else if m[2] != string(newest[1]) {
		t.Errorf("image tag %s is not the newest release in CHANGELOG.md, %s", m[2], newest[1])
	}
	if c.ImagePullPolicy != "IfNotPresent" {
		t.Errorf("imagePullPolicy %q, want IfNotPresent for a pinned release", c.ImagePullPolicy)
	}

	// Privileges: CAP_NET_ADMIN and nothing else, no escalation.
	sc := c.SecurityContext
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the container is privileged")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if strings.Join(sc.Capabilities.Drop, ",") != "ALL" || strings.Join(sc.Capabilities.Add, ",") != "NET_ADMIN" {
		t.Errorf("capabilities drop %q add %q, want drop ALL, add NET_ADMIN only", sc.Capabilities.Drop, sc.Capabilities.Add)
	}
	// no_new_privs (allowPrivilegeEscalation: false) voids the image's file
	// capability, so only user 0 gets CAP_NET_ADMIN from the runtime;
	// TestNoNewPrivsCapabilityByUser shows when.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser is not 0: with allowPrivilegeEscalation false a non-root user gets no CAP_NET_ADMIN")
	}

	// Ports, probes and the exporter's own arguments.
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" {
		t.Fatalf("ports %+v, want one named metrics", c.Ports)
	}
	if !containsArg(c.Args, fmt.Sprintf("--web.listen-address=:%d", c.Ports[0].ContainerPort)) {
		t.Errorf("args %q do not listen on the container port %d", c.Args, c.Ports[0].ContainerPort)
	}
	for _, p := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/-/healthy"}, {"readinessProbe", c.ReadinessProbe, "/-/ready"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != "metrics" {
			t.Errorf("%s %+v, want httpGet %s on port metrics", p.name, p.probe, p.path)
		}
	}
	configPath := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			configPath = v
		}
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		mounted = mounted || filepath.Dir(configPath) == vm.MountPath
	}
	if !mounted {
		t.Errorf("--config.file=%s is not under a mounted volume", configPath)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, filepath.Base(configPath))
	if err := os.WriteFile(cfg, []byte(docs.configMap.Data[filepath.Base(configPath)]), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{}, c.Args...)
	for i, a := range args {
		if strings.HasPrefix(a, "--config.file=") {
			args[i] = "--config.file=" + cfg
		}
	}
	out, err := exec.Command(binary, append(args, "--config.check")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Errorf("the DaemonSet's arguments with its ConfigMap: %v\n%s", err, out)
	}

	// Memory: a limit above what was measured, GOMEMLIMIT from it.
	limit, err := units.ParseBase2Bytes(strings.TrimSuffix(c.Resources.Limits["memory"], "i") + "B")
	if err != nil {
		t.Fatalf("memory limit %q: %v", c.Resources.Limits["memory"], err)
	}
	if limit < 3*measuredPeakRSS/2 {
		t.Errorf("memory limit %s is less than 1.5 times the measured peak of %.1f MB", c.Resources.Limits["memory"], float64(measuredPeakRSS)/1e6)
	}
	goMemLimit := false
	for _, e := range c.Env {
		goMemLimit = goMemLimit || e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
	}
	if !goMemLimit {
		t.Error("GOMEMLIMIT does not follow limits.memory")
	}

	// The PodMonitor scrapes these pods on that port.
	pm := docs.podMonitor.Spec
	for k, v := range pm.Selector.MatchLabels {
		if ds.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the PodMonitor's selector %s=%s does not match the pods", k, v)
		}
	}
	if len(pm.Selector.MatchLabels) == 0 || len(pm.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor %+v: want a selector and one endpoint", pm)
	}
	if ep := pm.PodMetricsEndpoints[0]; ep.Port != "metrics" || ep.Path != "/metrics" {
		t.Errorf("PodMonitor endpoint %+v, want port metrics, path /metrics", ep)
	}
	if docs.podMonitor.Metadata.Namespace != ds.Metadata.Namespace {
		t.Errorf("the PodMonitor is in %q, the DaemonSet in %q", docs.podMonitor.Metadata.Namespace, ds.Metadata.Namespace)
	}
}

func containsArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}

// dropUIDEnv makes the test binary drop to the uid:gid it names, the way a
// runtime that clears the permitted capabilities of a non-root user does
// (setresuid without keeping capabilities), and execute its arguments.
const dropUIDEnv = "NFE_TEST_DROP_TO"

// execAsUser is that drop; it does not return. Called by TestMain.
func execAsUser(argv []string) {
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(2)
	}
	u, g, _ := strings.Cut(os.Getenv(dropUIDEnv), ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err1 != nil || err2 != nil {
		fail(dropUIDEnv, fmt.Errorf("%q is not uid:gid", os.Getenv(dropUIDEnv)))
	}
	// What the runtime sets up: no_new_privs and a bounding set of
	// CAP_NET_ADMIN alone.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("PR_SET_NO_NEW_PRIVS", err)
	}
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		fail("cap_last_cap", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(last)))
	for c := 0; c <= n; c++ {
		if c == unix.CAP_NET_ADMIN {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			fail("PR_CAPBSET_DROP", err)
		}
	}
	if err := syscall.Setgroups(nil); err != nil {
		fail("setgroups", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		fail("setresgid", err)
	}
	// Leaving uid 0 clears the permitted and effective capabilities.
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		fail("setresuid", err)
	}
	fail("exec", syscall.Exec(argv[0], argv, os.Environ()))
}

// TestNoNewPrivsCapabilityByUser runs the image's binary (no file
// capability) the ways a container runtime can start it under
// allowPrivilegeEscalation: false, that is with no_new_privs and a bounding
// set of CAP_NET_ADMIN alone. As user 0 the runtime gives CAP_NET_ADMIN, and
// nothing else, everywhere: examples/daemonset.yaml and the image take that.
// A non-root user holds it only as an ambient capability (as systemd's
// AmbientCapabilities= gives; Docker and Kubernetes give none): whether the
// runtime leaves CAP_NET_ADMIN permitted across the switch to the user
// (containerd) or clears it (Docker and cri-dockerd since 20.10.14), exec
// drops it. The exporter then starts all the same, and its log names
// CAP_NET_ADMIN for every netfilter collector.
func TestNoNewPrivsCapabilityByUser(t *testing.T) {
	netnstest.Require(t, "setpriv", "nfacct")
	dir, err := os.MkdirTemp("", "nfe-nnp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, exporterName)
	if err := copyFile(binary, bin); err != nil {
		t.Fatal(err)
	}
	uid, gid, _ := strings.Cut(nonRootUser, ":")
	base := []string{"--clear-groups", "--bounding-set=-all,+net_admin", "--no-new-privs"}
	for _, tt := range []struct {
		name    string
		setpriv []string // after base; nil: the test binary drops to the user itself
		env     []string
		success string
		capEff  string
	}{
		{"user 65532, CAP_NET_ADMIN kept permitted", []string{"--inh-caps=-all", "--reuid=" + uid, "--regid=" + gid, bin}, nil, "0", "0000000000000000"},
		{"user 65532, capabilities cleared", nil, []string{dropUIDEnv + "=" + nonRootUser}, "0", "0000000000000000"},
		{"user 65532, CAP_NET_ADMIN ambient", []string{"--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--reuid=" + uid, "--regid=" + gid, bin}, nil, "1", "0000000000001000"},
		{"user 0", []string{"--inh-caps=-all", "--reuid=0", "--regid=0", bin}, nil, "1", "0000000000001000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := netnstest.New(t)
			ns.Run(t, "nfacct", "add", "nnp")
			args := append(append([]string{"netns", "exec", ns.Name, "setpriv"}, base...), tt.setpriv...)
			if tt.setpriv == nil {
				args = []string{"netns", "exec", ns.Name, os.Args[0], bin}
			}
			args = append(args, "--web.listen-address=127.0.0.1:9862")
			cmd := exec.Command("ip", args...)
			cmd.Env = append(os.Environ(), tt.env...)
			log := &lockedBuffer{}
			cmd.Stdout, cmd.Stderr = log, log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if t.Failed() {
					t.Logf("exporter log:\n%s", log)
				}
			})
			client := ns.HTTPClient()
			waitMetrics(t, client, "http://127.0.0.1:9862/-/ready")
			resp, err := client.Get("http://127.0.0.1:9862/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			for _, coll := range []string{"nfacct", "conntrack", "conntrack_stats"} {
				want := fmt.Sprintf("netfilter_exporter_collector_success{collector=%q} %s", coll, tt.success)
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", findPid(t, bin)))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(status), "CapEff:\t"+tt.capEff) || !strings.Contains(string(status), "NoNewPrivs:\t1") {
				t.Errorf("want CapEff %s under no_new_privs:\n%s", tt.capEff, status)
			}
			if tt.success == "0" && !strings.Contains(log.String(), "CAP_NET_ADMIN") {
				t.Errorf("without CAP_NET_ADMIN the exporter's log does not name it:\n%s", log)
			}
		})
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
