package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/netfilter-exporter/netfilter_exporter/internal/proc"
)

// mergeBomb returns issue 24's merge-key bomb: a map of ten networks, then
// levels maps, each merging the one before ten times (820 bytes for 9
// levels).
func mergeBomb(levels int) string {
	var b strings.Builder
	b.WriteString("networks:\n  <<:\n    - &l0 {")
	for i := range 10 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "n%d: [10.%d.0.0/16]", i, i)
	}
	b.WriteString("}\n")
	for l := 1; l <= levels; l++ {
		fmt.Fprintf(&b, "    - &l%d {<<: [%s]}\n", l, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", l-1), 10), ", "))
	}
	return b.String()
}

// aliasBomb returns issue 24's alias amplification: a deny rule with
// networks source networks, aliased aliases times (162 KB for 10,000 and
// 1,000).
func aliasBomb(networks, aliases int) string {
	var b strings.Builder
	b.WriteString("filters:\n  deny:\n    - &r {src: [")
	for i := range networks {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "10.%d.%d.0/24", (i>>8)&255, i&255)
	}
	b.WriteString("]}\n")
	b.WriteString(strings.Repeat("    - *r\n", aliases))
	return b.String()
}

func TestSizeExpanded(t *testing.T) {
	tests := []struct {
		yaml string
		want int
	}{
		// The document, the map, two keys and two values.
		{"a: 1\nb: 2\n", 6},
		// The document, the map, a, the list, 1, 2, b, and the list again.
		{"a: &x [1, 2]\nb: *x\n", 10},
		// An alias to a scalar is one node.
		{"a: &x 1\nb: [*x, *x, *x]\n", 9},
		// Aliases inside an anchor are counted in its size.
		{"a: &x [1]\nb: &y [*x, *x]\nc: [*y, *y]\n", 2 + 3 + 6 + 12},
		// The document, the map, networks, a map, <<, the list, then the
		// three maps: ten keys and lists of one, ten such, and ten of those.
		{mergeBomb(2), 6 + 31 + (3 + 10*31) + (3 + 10*(3+10*31))},
	}
	for _, tt := range tests {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tt.yaml), &doc); err != nil {
			t.Fatal(err)
		}
		got, err := sizeExpanded(&doc, 1<<20)
		if err != nil || got != tt.want {
			t.Errorf("sizeExpanded(%q) = %d, %v, want %d", tt.yaml, got, err, tt.want)
		}
		if _, err := sizeExpanded(&doc, tt.want-1); !errors.Is(err, errExpansion) {
			t.Errorf("sizeExpanded(%q) with a limit of %d: error %v, want %v", tt.yaml, tt.want-1, err, errExpansion)
		}
	}
}

// TestParseExpansionRefused: files that stand for more than MaxConfigNodes
// nodes once their aliases are expanded, or hold an alias inside its own
// anchor, are refused at once with the alias, its line and its anchor.
func TestParseExpansionRefused(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want error
		msg  string
	}{
		{"merge bomb", mergeBomb(9), errExpansion, "config.yml: line 8: alias *l4 expands the file past the limit of 1048576 nodes (its anchor &l4, line 7, holds 313333 nodes, copied for each alias)"},
		{"merge bomb of 5 levels", mergeBomb(5), errExpansion, "line 8: alias *l4 expands the file past the limit"},
		{"alias amplification", aliasBomb(10_000, 1_000), errExpansion, "config.yml: line 107: alias *r expands the file past the limit of 1048576 nodes (its anchor &r, line 3, holds 10003 nodes, copied for each alias)"},
		{"list aliases", "ports: &p [" + strings.Repeat("1, ", 1000) + "2]\nfilters:\n  deny:\n" + strings.Repeat("    - {dport: *p}\n", 2000), errExpansion, "alias *p expands the file past the limit"},
		{"merge inside itself", "conntrack: &x {<<: *x}\n", errAliasCycle, "config.yml: line 1: alias *x is inside its own anchor &x (line 1)"},
		{"list inside itself", "ports: &p [1, [*p]]\n", errAliasCycle, "line 1: alias *p is inside its own anchor &p (line 1)"},
		{"nested merge inside itself", "filters:\n  deny:\n    - &a\n      zone: [1]\n      <<: {<<: *a}\n", errAliasCycle, "line 5: alias *a is inside its own anchor &a (line 3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse([]byte(tt.yaml), "config.yml")
			if d := time.Since(start); d > time.Second {
				t.Errorf("Parse() took %v, want under 1s", d)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse() error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

// TestParseMergesOnce: a map merged by many maps is expanded once, so
// reading a merge chain below the limit takes work in proportion to the
// file, not to what it stands for; the result is YAML's.
func TestParseMergesOnce(t *testing.T) {
	data := []byte(mergeBomb(4))
	d := &decoder{}
	raw, err := d.file(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Networks) != 10 || raw.Networks["n9"].items[0] != "10.9.0.0/16" {
		t.Errorf("Networks = %v, want n0 to n9", raw.Networks)
	}
	// The file stands for 348,000 nodes; it holds under 200.
	if d.expanded < 300_000 || d.visits > 1_000 {
		t.Errorf("expanded %d nodes, read %d: want over 300000 and at most 1000", d.expanded, d.visits)
	}
	if _, err := Parse(data, "config.yml"); err != nil {
		t.Errorf("Parse() error %v", err)
	}
}

// parseChildEnv names the file that TestParseChild parses, in a process of
// its own for TestParseBombsBoundedMemory.
const parseChildEnv = "CONFIG_TEST_PARSE_FILE"

// TestParseChild parses the file named by $CONFIG_TEST_PARSE_FILE and
// prints how long it took; it runs only as the child process of
// TestParseBombsBoundedMemory.
func TestParseChild(t *testing.T) {
	path := os.Getenv(parseChildEnv)
	if path == "" {
		t.Skip("only run by TestParseBombsBoundedMemory")
	}
	start := time.Now()
	_, err := Load(path)
	took := time.Since(start)
	// The peak of this process's own memory: the rusage its parent
	// gets would count the parent's too, as Linux carries the peak of
	// the forking process over exec.
	hwm, herr := proc.StatusMB(os.Getpid(), "VmHWM")
	if herr != nil {
		t.Fatal(herr)
	}
	fmt.Printf("took %d ms, peak RSS %d KiB: %v\n", took.Milliseconds(), int64(hwm*1024), err)
}

// TestParseBombsBoundedMemory: issue 24's bombs are refused within a second
// and at bounded memory, measured as the peak RSS (VmHWM) of a process that
// does nothing else (the test binary run again for TestParseChild). Before
// the limit, the merge bomb ran for minutes and the alias amplification
// took 1 GB.
func TestParseBombsBoundedMemory(t *testing.T) {
	if os.Getenv(parseChildEnv) != "" {
		t.Skip("the child")
	}
	maxRSS, maxTime := int64(100<<10), 1000 // KiB, ms
	if raceEnabled {
		// The race detector's shadow memory and its slowness.
		maxRSS, maxTime = 3*maxRSS, 5*maxTime
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		name, yaml string
	}{
		{"merge9.yml", mergeBomb(9)},
		{"filt_mid.yml", aliasBomb(10_000, 1_000)},
		{"filt_big.yml", aliasBomb(40_000, 25_000)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := dir + "/" + tt.name
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestParseChild$", "-test.v")
			cmd.Env = append(os.Environ(), parseChildEnv+"="+path)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out.Bytes())
			}
			var ms int
			var rss int64
			i := strings.Index(out.String(), "took ")
			if i < 0 {
				t.Fatalf("child printed %q", out.String())
			}
			line := out.String()[i:]
			if _, err := fmt.Sscanf(line, "took %d ms, peak RSS %d KiB:", &ms, &rss); err != nil {
				t.Fatalf("child printed %q: %v", out.String(), err)
			}
			var msg string
			msg, _, _ = strings.Cut(line, "\n")
			if !strings.Contains(msg, errExpansion.Error()) {
				t.Errorf("child: %s, want an error that %s", msg, errExpansion)
			}
			// Bounded time is judged on the child's processor time, which
			// other work on a loaded host does not stretch as it does the
			// wall-clock time the child prints.
			cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Milliseconds()
			t.Logf("%s (%d bytes): %d ms, %d ms of CPU, peak RSS %d KiB", tt.name, len(tt.yaml), ms, cpu, rss)
			if cpu > int64(maxTime) {
				t.Errorf("the child used %d ms of CPU, want at most %d", cpu, maxTime)
			}
			if rss > maxRSS {
				t.Errorf("peak RSS %d KiB, want at most %d", rss, maxRSS)
			}
		})
	}
}
