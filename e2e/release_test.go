package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// dockerfile is a parsed Dockerfile: its stages, each a list of
// instructions with continuation lines joined.
type dockerfile struct {
	stages []dockerStage
}

type dockerStage struct {
	from   string // the FROM line's arguments
	instrs []dockerInstr
}

type dockerInstr struct {
	cmd, args string // e.g. "RUN", "make build"
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var df dockerfile
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			df.stages = append(df.stages, dockerStage{from: args})
			return
		}
		if len(df.stages) == 0 {
			t.Fatalf("%s: %s before FROM", path, cmd)
		}
		s := &df.stages[len(df.stages)-1]
		s.instrs = append(s.instrs, dockerInstr{cmd: cmd, args: strings.TrimSpace(args)})
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return df
}

// gitRun runs git in dir and returns its trimmed output.
func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.invalid"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// copyFile copies one regular file or symlink, with a fresh modification
// time, as a build context transfer does.
func copyFile(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// dockerignored reports whether rel, a slash-separated path in the context,
// is left out by one of the .dockerignore patterns (Docker matches each
// pattern against the path and its parent directories).
func dockerignored(t *testing.T, patterns []string, rel string) bool {
	t.Helper()
	for _, p := range patterns {
		p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
		for q := rel; q != "." && q != "/"; q = filepath.Dir(q) {
			ok, err := filepath.Match(p, q)
			if err != nil {
				t.Fatalf(".dockerignore: bad pattern %q: %v", p, err)
			}
			if ok {
				return true
			}
		}
	}
	return false
}

// TestDockerfileBuildStage runs what `docker build` runs, without a Docker
// engine: the working tree is committed to a fresh repository without tags
// (a clone that did not fetch them), that clone is copied through
// .dockerignore into a build context, and every RUN of the Dockerfile's
// build stage runs there, in order, as CI runs them, with the build
// arguments BuildKit gives for this platform. The build stage must run on
// the builder's platform and build for the target's; the image must carry
// the OCI labels, from the build arguments make image passes, and run the
// binary as user 0. The binary must report the VERSION file's version and
// the revision, carry no file capability, and start (--help) as another
// user with an empty bounding set, where a file capability made exec fail;
// promu's build with .promu.yml, once the clone is tagged v<VERSION> (a
// release), must report the same version.
func TestDockerfileBuildStage(t *testing.T) {
	netnstest.Require(t, "git", "make", "getcap", "setpriv")
	df := parseDockerfile(t, "Dockerfile")
	if len(df.stages) != 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and the image", len(df.stages))
	}
	build, image := df.stages[0], df.stages[1]

	// The build stage: on the builder's platform, the Go release go.mod
	// asks for, and its RUN lines.
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || !strings.HasPrefix(build.from, "--platform=$BUILDPLATFORM golang:"+string(goVersion[1])+"-") || !strings.HasSuffix(build.from, " AS build") {
		t.Errorf("build stage FROM %s, want --platform=$BUILDPLATFORM golang:%s-... AS build as go.mod asks", build.from, goVersion)
	}
	var runs []string
	workdir := ""
	args := map[string]bool{}
	for _, in := range build.instrs {
		switch in.cmd {
		case "RUN":
			runs = append(runs, in.args)
		case "WORKDIR":
			workdir = in.args
		case "ARG":
			for _, a := range strings.Fields(in.args) {
				args[a] = true
			}
		case "COPY":
			if in.args == ". ." && len(runs) == 0 {
				t.Error("the build stage copies the context before it has run anything")
			}
		}
	}
	for _, a := range []string{"TARGETOS", "TARGETARCH", "SOURCE_DATE_EPOCH"} {
		if !args[a] {
			t.Errorf("the build stage does not declare ARG %s", a)
		}
	}
	wantRuns := []string{"go mod download", "GOOS=$TARGETOS GOARCH=$TARGETARCH make build"}
	if strings.Join(runs, "|") != strings.Join(wantRuns, "|") {
		t.Errorf("the build stage runs %q, want %q", runs, wantRuns)
	}
	if !regexp.MustCompile(`(?m)^test:.*\bbuild\b`).Match(mustRead(t, "Makefile")) {
		t.Error("make test does not run make build, so CI would not run the Dockerfile's build command")
	}

	// The image: the binary of the build stage, as user 0, with its labels.
	want := map[string]string{
		"COPY":       "--from=build " + workdir + "/" + exporterName + " /bin/" + exporterName,
		"USER":       "0:0",
		"ENTRYPOINT": `["/bin/` + exporterName + `"]`,
	}
	labels := map[string]string{}
	imageArgs := map[string]bool{}
	for _, in := range image.instrs {
		if w, ok := want[in.cmd]; ok && in.args == w {
			delete(want, in.cmd)
		}
		switch in.cmd {
		case "LABEL":
			for _, m := range regexp.MustCompile(`([a-z.]+)="([^"]*)"`).FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = m[2]
			}
		case "ARG":
			for _, a := range strings.Fields(in.args) {
				imageArgs[a] = true
			}
		}
	}
	for cmd, w := range want {
		t.Errorf("the image lacks %s %s", cmd, w)
	}
	promu := string(mustRead(t, ".promu.yml"))
	repoPath := regexp.MustCompile(`(?m)^  path: (\S+)$`).FindStringSubmatch(promu)
	if repoPath == nil {
		t.Fatal(".promu.yml names no repository path")
	}
	makefile := string(mustRead(t, "Makefile"))
	for label, w := range map[string]string{
		"org.opencontainers.image.source":   "https://" + repoPath[1],
		"org.opencontainers.image.version":  "$VERSION",
		"org.opencontainers.image.revision": "$REVISION",
		"org.opencontainers.image.created":  "$CREATED",
		"org.opencontainers.image.licenses": "Apache-2.0",
	} {
		if labels[label] != w {
			t.Errorf("the image's label %s is %q, want %q", label, labels[label], w)
		}
		if arg, ok := strings.CutPrefix(w, "$"); ok && (!imageArgs[arg] || !strings.Contains(makefile, "--build-arg "+arg+"=")) {
			t.Errorf("the label %s reads $%s: the image stage must declare ARG %s and make image pass --build-arg %s=", label, arg, arg, arg)
		}
	}
	if !strings.Contains(string(mustRead(t, "LICENSE")), "Apache License\n                           Version 2.0") {
		t.Error("LICENSE is not the Apache License 2.0 the label names")
	}

	// A clone of the working tree without tags, copied through
	// .dockerignore: the version is VERSION's all the same.
	repo, revision := commitTree(t)

	var patterns []string
	for _, line := range strings.Split(string(mustRead(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not modelled by this test", line)
		}
		patterns = append(patterns, line)
	}
	if dockerignored(t, patterns, ".git") || dockerignored(t, patterns, ".git/HEAD") {
		t.Fatal(".dockerignore leaves .git out: the image could not know its revision")
	}
	ctx := t.TempDir()
	err = filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		if rel == "." || d.IsDir() {
			return nil
		}
		if dockerignored(t, patterns, filepath.ToSlash(rel)) {
			return nil
		}
		return copyFile(path, filepath.Join(ctx, rel))
	})
	if err != nil {
		t.Fatal(err)
	}

	// BuildKit's arguments for this platform; SOURCE_DATE_EPOCH not given.
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") {
			env = append(env, e)
		}
	}
	env = append(env, "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH, "SOURCE_DATE_EPOCH=")
	for _, run := range runs {
		cmd := exec.Command("sh", "-c", run)
		cmd.Dir = ctx
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", run, err, out)
		}
	}
	bin := filepath.Join(ctx, exporterName)
	if out, err := exec.Command("getcap", bin).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("getcap %s: %v %s, want no file capability", bin, err, out)
	}
	// Where the bounding set lacks NET_ADMIN, exec of a binary with a file
	// capability failed (126, "Operation not permitted"): this one starts.
	if err := os.Chmod(ctx, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid, _ := strings.Cut(nonRootUser, ":")
	if out, err := exec.Command("setpriv", "--reuid="+uid, "--regid="+gid, "--clear-groups", "--bounding-set=-all", "--inh-caps=-all", bin, "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "--config.file") {
		t.Errorf("the image's binary as user %s with no capability in the bounding set: %v\n%.300s", nonRootUser, err, out)
	}
	wantVersion := fmt.Sprintf("%s, version %s (branch: main, revision: %s)", exporterName, projectVersion(t), revision)
	if got := versionLine(t, bin); got != wantVersion {
		t.Errorf("the image's binary, built in a clone without tags, reports\n  %s\nwant\n  %s", got, wantVersion)
	}

	// A release: the tag v<VERSION>, promu with .promu.yml.
	gitRun(t, repo, "tag", "-a", "v"+projectVersion(t), "-m", "v"+projectVersion(t))
	dist := t.TempDir()
	cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "promu", "--config=.promu.yml", "build", "--prefix", dist)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promu build: %v\n%s", err, out)
	}
	if got := versionLine(t, filepath.Join(dist, exporterName)); got != wantVersion {
		t.Errorf("the release binary (promu build) reports\n  %s\nwant\n  %s", got, wantVersion)
	}
}

// projectVersion is the VERSION file's version: x.y.z, as promu reads it.
func projectVersion(t *testing.T) string {
	t.Helper()
	v := strings.TrimSpace(string(mustRead(t, "VERSION")))
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("VERSION holds %q, want x.y.z", v)
	}
	return v
}

// commitTree commits the working tree (tracked and untracked files, as git
// ls-files lists them, uncommitted changes included) to a fresh repository
// on branch main, without tags, and returns it and its revision.
func commitTree(t *testing.T) (repo, revision string) {
	t.Helper()
	repo = t.TempDir()
	files := strings.Split(gitRun(t, ".", "ls-files", "-z", "--cached", "--others", "--exclude-standard"), "\x00")
	for _, f := range files {
		if f == "" {
			continue
		}
		if _, err := os.Lstat(f); os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err := copyFile(f, filepath.Join(repo, f)); err != nil {
			t.Fatal(err)
		}
	}
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "add", "-A")
	gitRun(t, repo, "commit", "-q", "-m", "release")
	return repo, gitRun(t, repo, "rev-parse", "HEAD")
}

// TestVersionInCleanClone builds with make (build, package) in two clones of
// the same commit, without tags, in directories of different names, as two
// hosts would: the binaries, the .deb and the .rpm must be the same bytes;
// the binary must report the VERSION file's version and the revision, and
// the last commit's time as the build date, and not name this host. A third
// build with SOURCE_DATE_EPOCH set reports that date instead. The build
// cache is shared: the go command keys its cache by every input that changes
// an output, the directory included when it would (without -trimpath), so a
// build that depended on its directory would not be served from the other's
// cache. (With an empty cache for the second build, make build alone took
// 237 s on a loaded 2-core machine, to the same result.)
func TestVersionInCleanClone(t *testing.T) {
	netnstest.RequireTools(t, "git", "make", "date")
	if testing.Short() {
		t.Skip("three builds: in make test, not in the root-free tier (make unit)")
	}
	repo, revision := commitTree(t)
	commitTime, err := strconv.ParseInt(gitRun(t, repo, "log", "-1", "--format=%ct"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "another", "clone-b")
	build := func(dir string, env ...string) []byte {
		t.Helper()
		cmd := exec.Command("make", "build", "package")
		cmd.Dir = dir
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make build package in %s: %v\n%s", dir, err, out)
		}
		return mustRead(t, filepath.Join(dir, exporterName))
	}
	gitRun(t, ".", "clone", "-q", repo, a)
	gitRun(t, ".", "clone", "-q", repo, b)
	binA := build(a)
	binB := build(b)
	if !bytes.Equal(binA, binB) {
		t.Errorf("two builds of commit %s differ: %d and %d bytes (%s, %s)", revision, len(binA), len(binB), a, b)
	}
	pkgs, _ := filepath.Glob(filepath.Join(a, "dist", "*"))
	if len(pkgs) != 2 {
		t.Errorf("make package made %q, want a .deb and a .rpm", pkgs)
	}
	for _, p := range pkgs {
		if pb := mustRead(t, filepath.Join(b, "dist", filepath.Base(p))); !bytes.Equal(mustRead(t, p), pb) {
			t.Errorf("the two clones' %s differ", filepath.Base(p))
		}
	}

	out := versionOutput(t, filepath.Join(a, exporterName))
	for _, want := range []string{
		fmt.Sprintf("%s, version %s (branch: main, revision: %s)\n", exporterName, projectVersion(t), revision),
		"build date:       " + time.Unix(commitTime, 0).UTC().Format("20060102-15:04:05") + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--version of a clean clone without tags lacks %q:\n%s", want, out)
		}
	}
	if host, _ := os.Hostname(); len(host) > 3 && bytes.Contains(binA, []byte(host)) {
		t.Errorf("the binary holds %q, this build host's name", host)
	}

	build(a, "SOURCE_DATE_EPOCH=1700000000")
	if line := "build date:       20231114-22:13:20\n"; !strings.Contains(versionOutput(t, filepath.Join(a, exporterName)), line) {
		t.Errorf("a build with SOURCE_DATE_EPOCH=1700000000 does not report %q", line)
	}
}

// versionOutput returns bin --version.
func versionOutput(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	return string(out)
}

// versionLine returns the first line of bin --version.
func versionLine(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
