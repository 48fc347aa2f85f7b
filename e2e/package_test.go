package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// packageName is the name of the .deb and the .rpm.
const packageName = "netfilter-exporter"

// packagedFiles are the files the packages hold, besides the directories;
// rpmOnly and debOnly are the packager's own.
var (
	packagedFiles = []string{
		"/etc/netfilter_exporter/config.yml",
		"/usr/bin/netfilter_exporter",
		"/usr/lib/sysctl.d/60-netfilter-exporter.conf",
		"/usr/lib/systemd/system/netfilter_exporter.service",
		"/usr/lib/systemd/system/netfilter_exporter.socket",
		"/usr/share/doc/netfilter-exporter/README.md",
		"/usr/share/doc/netfilter-exporter/examples/netfilter_exporter-socket.conf",
		"/usr/share/man/man1/netfilter_exporter.1.gz",
	}
	debOnly = []string{
		"/usr/share/doc/netfilter-exporter/changelog.Debian.gz",
		"/usr/share/doc/netfilter-exporter/changelog.gz",
		"/usr/share/doc/netfilter-exporter/copyright",
		"/usr/share/lintian/overrides/netfilter-exporter",
	}
	rpmOnly = []string{
		"/usr/share/doc/netfilter-exporter/CHANGELOG.md",
		"/usr/share/licenses/netfilter-exporter/LICENSE",
	}
)

// TestPackageDeb builds the packages with make package in a clean clone,
// checks the .deb with lintian (no error; warnings are logged) and both
// packages' contents, then installs the .deb with dpkg -i, checks its files
// where the README's Install section says, the unit against the example,
// and that nothing was started and no sysctl changed, and removes it with
// dpkg -r and dpkg -P: the conffile stays after -r, the units are masked,
// and -P leaves nothing, not even the links of a service the administrator
// enabled. The maintainer scripts start nothing, and ask systemd anything
// only where it runs (/run/systemd/system): here, where it is not PID 1,
// they only record links. The package is purged when the test ends,
// whatever happened.
func TestPackageDeb(t *testing.T) {
	netnstest.Require(t, "git", "make", "lintian", "dpkg", "dpkg-deb", "dpkg-query", "rpm")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", packageName).Output(); err == nil && string(out) != "not-installed" {
		t.Fatalf("%s is already on this host (%s): the test would remove it", packageName, out)
	}
	repo, revision := commitTree(t)
	cmd := exec.Command("make", "package")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	v := projectVersion(t)
	arch := strings.TrimSpace(runOut(t, "dpkg", "--print-architecture"))
	deb := filepath.Join(repo, "dist", packageName+"_"+v+"-1_"+arch+".deb")
	rpms, _ := filepath.Glob(filepath.Join(repo, "dist", packageName+"-"+v+"-1.*.rpm"))
	if len(rpms) != 1 {
		t.Fatalf("make package made %q, want one %s-%s-1.<arch>.rpm", rpms, packageName, v)
	}
	for _, p := range append([]string{deb}, rpms...) {
		if fi, err := os.Stat(p); err != nil {
			t.Fatal(err)
		} else {
			t.Logf("%s: %d bytes", filepath.Base(p), fi.Size())
		}
	}

	// lintian: no error; the warnings are the ones the README's reader
	// would see too, logged.
	out, err := exec.Command("lintian", "--fail-on", "error", "--tag-display-limit", "0", deb).CombinedOutput()
	t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
	if err != nil || regexp.MustCompile(`(?m)^E: `).Match(out) {
		t.Errorf("lintian reports errors: %v", err)
	}

	// Contents.
	var debFiles []string
	for _, line := range strings.Split(runOut(t, "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && !strings.HasPrefix(f[0], "d") {
			debFiles = append(debFiles, strings.TrimPrefix(f[5], "."))
		}
	}
	if want := sorted(append(slices.Clone(packagedFiles), debOnly...)); !slices.Equal(sorted(debFiles), want) {
		t.Errorf("the .deb holds\n  %q\nwant\n  %q", sorted(debFiles), want)
	}
	rpmFiles := strings.Fields(runOut(t, "rpm", "-qpl", rpms[0]))
	if want := sorted(append(slices.Clone(packagedFiles), rpmOnly...)); !slices.Equal(sorted(rpmFiles), want) {
		t.Errorf("the .rpm holds\n  %q\nwant\n  %q", sorted(rpmFiles), want)
	}
	if host, _ := os.Hostname(); runOut(t, "rpm", "-qp", "--qf", "%{BUILDHOST}", rpms[0]) == host {
		t.Errorf("the .rpm names this build host, %s", host)
	}
	if conffiles := runOut(t, "dpkg-deb", "-f", deb, "Package", "Version"); !strings.Contains(conffiles, "Version: "+v+"-1") {
		t.Errorf("the .deb's control: %s", conffiles)
	}

	// Install.
	sysctls := readSysctls(t)
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "-P", packageName).CombinedOutput(); err != nil {
			t.Errorf("dpkg -P %s at the end: %v\n%s", packageName, err, out)
		}
	})
	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	for _, f := range readmeInstallPaths(t) {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("README's Install section names %s: %v", f, err)
		}
	}
	for _, f := range append(slices.Clone(packagedFiles), debOnly...) {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed: %v", err)
		}
	}
	if got := runOut(t, "dpkg-query", "-W", "-f=${Conffiles}", packageName); !strings.Contains(got, "/etc/netfilter_exporter/config.yml ") {
		t.Errorf("the config is not a conffile: %q", got)
	}

	// The unit: the example's, with the binary where the package puts it.
	unit := string(mustRead(t, "/usr/lib/systemd/system/netfilter_exporter.service"))
	if want := strings.ReplaceAll(string(mustRead(t, "examples/netfilter_exporter.service")), "/usr/local/bin/netfilter_exporter", "/usr/bin/netfilter_exporter"); unit != want {
		t.Errorf("the installed unit is not examples/netfilter_exporter.service with /usr/bin:\n%s", unit)
	}
	exec1 := regexp.MustCompile(`(?m)^ExecStart=(\S+) (.*)$`).FindStringSubmatch(unit)
	if exec1 == nil || exec1[1] != "/usr/bin/netfilter_exporter" || !regexp.MustCompile(`(?m)^DynamicUser=yes$`).MatchString(unit) {
		t.Fatalf("the installed unit's ExecStart %q, or no DynamicUser=yes", exec1)
	}
	args := append(strings.Fields(exec1[2]), "--config.check")
	if out, err := exec.Command(exec1[1], args...).CombinedOutput(); err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Errorf("the unit's command with --config.check: %v\n%s", err, out)
	}
	dropIn := string(mustRead(t, "/usr/share/doc/netfilter-exporter/examples/netfilter_exporter-socket.conf"))
	if strings.Contains(dropIn, "/usr/local/") || !strings.Contains(dropIn, "ExecStart=/usr/bin/netfilter_exporter ") {
		t.Errorf("the packaged socket drop-in runs another binary:\n%s", dropIn)
	}
	if got, want := versionLine(t, "/usr/bin/netfilter_exporter"), exporterName+", version "+v+" (branch: main, revision: "+revision+")"; got != want {
		t.Errorf("the installed binary reports\n  %s\nwant\n  %s", got, want)
	}
	if got := gunzip(t, "/usr/share/doc/netfilter-exporter/changelog.gz"); got != string(mustRead(t, "CHANGELOG.md")) {
		t.Error("changelog.gz is not CHANGELOG.md")
	}
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "--warnings", "-l", "/usr/share/man/man1/netfilter_exporter.1.gz")
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "PAGER=cat", "MANPAGER=cat")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if out, err := cmd.Output(); err != nil || stderr.Len() > 0 || !strings.Contains(string(out), "--config.file") {
			t.Errorf("man -l of the installed page: %v\n%s", err, stderr.String())
		}
	}
	if pid := pidOf("/usr/bin/netfilter_exporter"); pid != 0 {
		t.Errorf("the package started the exporter (pid %d)", pid)
	}
	if after := readSysctls(t); !slices.Equal(after, sysctls) {
		t.Errorf("installing changed the sysctls: %q, were %q", after, sysctls)
	}

	// An administrator enables the service (offline here: no systemd
	// runs): the links are the package's to remove on purge.
	if _, err := exec.LookPath("systemctl"); err == nil {
		if out, err := exec.Command("systemctl", "--no-reload", "enable", "netfilter_exporter.service").CombinedOutput(); err != nil {
			t.Errorf("systemctl --no-reload enable: %v\n%s", err, out)
		}
		if len(systemdLeftovers(t)) == 0 {
			t.Error("systemctl enable made no link")
		}
	}

	// Remove: the conffile stays, the units are masked; purge: nothing
	// stays.
	if out, err := exec.Command("dpkg", "-r", packageName).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, out)
	}
	for _, f := range packagedFiles {
		_, err := os.Stat(f)
		if f == "/etc/netfilter_exporter/config.yml" {
			if err != nil {
				t.Errorf("dpkg -r removed the conffile %s", f)
			}
		} else if err == nil {
			t.Errorf("dpkg -r left %s", f)
		}
	}
	for _, unit := range []string{"netfilter_exporter.service", "netfilter_exporter.socket"} {
		if target, err := os.Readlink("/etc/systemd/system/" + unit); err != nil || target != "/dev/null" {
			t.Errorf("after dpkg -r %s is not masked: %q %v", unit, target, err)
		}
	}
	if got := runOut(t, "dpkg-query", "-W", "-f=${db:Status-Status}", packageName); got != "config-files" {
		t.Errorf("after dpkg -r the package is %q, want config-files", got)
	}
	if out, err := exec.Command("dpkg", "-P", packageName).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -P: %v\n%s", err, out)
	}
	for _, f := range append(append(slices.Clone(packagedFiles), debOnly...), "/etc/netfilter_exporter", "/usr/share/doc/netfilter-exporter") {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("dpkg -P left %s", f)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", packageName).Output(); err == nil && string(out) != "not-installed" {
		t.Errorf("after dpkg -P the package is %q", out)
	}
	if left := systemdLeftovers(t); len(left) > 0 {
		t.Errorf("dpkg -P left %q", left)
	}
}

// systemdLeftovers returns the files of the package's units under
// /etc/systemd/system (links, masks) and deb-systemd-helper's state.
func systemdLeftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	for _, root := range []string{"/etc/systemd/system", "/var/lib/systemd"} {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), "netfilter_exporter.") {
				left = append(left, path)
			}
			return nil
		})
	}
	return left
}

// readmeInstallPaths returns the absolute paths named in backquotes in the
// README's Install section (the /-/ endpoints left out).
func readmeInstallPaths(t *testing.T) []string {
	t.Helper()
	readme := string(mustRead(t, "README.md"))
	i := strings.Index(readme, "\n## Install\n")
	if i < 0 {
		t.Fatal("README has no Install section")
	}
	section := readme[i+1:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	var paths []string
	for _, m := range regexp.MustCompile("`(/[^` ]+)`").FindAllStringSubmatch(section, -1) {
		if !strings.HasPrefix(m[1], "/-/") { // endpoints, not files
			paths = append(paths, m[1])
		}
	}
	if len(paths) < 6 {
		t.Fatalf("README's Install section names %d paths, want the package's files: %q", len(paths), paths)
	}
	return paths
}

// readSysctls returns the conntrack sysctls the package's sysctl.d file
// sets, as this host has them (empty where nf_conntrack is not loaded).
func readSysctls(t *testing.T) []string {
	t.Helper()
	var v []string
	for _, s := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp", "nf_conntrack_events"} {
		b, _ := os.ReadFile("/proc/sys/net/netfilter/" + s)
		v = append(v, s+"="+strings.TrimSpace(string(b)))
	}
	return v
}

// pidOf returns a process running the executable path, or 0.
func pidOf(path string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == path {
			var pid int
			for _, c := range e.Name() {
				pid = pid*10 + int(c-'0')
			}
			return pid
		}
	}
	return 0
}

func runOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
