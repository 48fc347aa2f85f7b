package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzParse: no file makes the reader panic or work past its bound. The
// reader reads at most as many nodes as the file stands for once its
// aliases are expanded, which is at most MaxConfigNodes, so its time is
// linear in the file; an error is at most 1 KB, whatever the file. The
// seeds (normal files and the bombs of issue 24, small) run with the
// package's tests.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.yml")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(full),
		"",
		"# nothing\n",
		"networks:\n  lan: &lan [192.168.0.0/16]\nfilters:\n  accept:\n    - &web {dst: *lan, dport: [80, 443]}\n    - <<: *web\n      dport: [8080]\n    - <<: [{proto: [udp]}, *web]\n",
		"ports: [22, 53, \"8000-8100\"]\nconntrack: {group_by: [family, proto, dport], max_series: 10}\n",
		"filters: {deny: [{mark: [\"0x10/0xf0\", 5]}, {zone: [7]}, {src: [\"fd00::/8\"], sport: [1024-65535]}]}\n",
		mergeBomb(2),
		mergeBomb(9),
		aliasBomb(10, 10),
		// A list of 1,000 ports aliased 1,100 times: 19 KB for 1.1 Mi nodes.
		"ports: &p [" + strings.Repeat("1, ", 999) + "1]\nfilters: {deny: [" + strings.Repeat("{dport: *p}, ", 1099) + "{dport: *p}]}\n",
		"conntrack: &x {<<: *x}\n",
		"ports: &p [1, [*p]]\n",
		"ports: [22]\n---\nports: [80]\n",
		"networks: {lan: [10.0.0.0/8, ~]}\n",
		"? " + strings.Repeat("k", 2000) + "\n: 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxConfigFileSize {
			return // Load refuses it unread
		}
		start := time.Now()
		d := &decoder{}
		raw, err := d.file(data)
		if d.expanded > MaxConfigNodes {
			t.Fatalf("accepted a file that stands for %d nodes, past %d", d.expanded, MaxConfigNodes)
		}
		if d.visits > d.expanded {
			t.Fatalf("read %d nodes of a file that stands for %d", d.visits, d.expanded)
		}
		if err == nil {
			p := parser{file: "fuzz.yml"}
			_, err = p.config(raw)
		}
		// Linear: a file of 1 MiB takes 0.3s on a 2-core host (BenchmarkParse).
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("%d bytes took %v", len(data), took)
		}
		if err != nil && len(err.Error()) > 1024 {
			t.Fatalf("error of %d bytes: %.1100s", len(err.Error()), err)
		}
	})
}

// BenchmarkParse reads files of 1 KB, 100 KB and 1 MB made of the
// example's kinds of fields (networks, ports, filters), so that the time
// and memory per byte show whether the reader is linear in the file.
func BenchmarkParse(b *testing.B) {
	for _, size := range []struct {
		name  string
		bytes int
	}{{"1KB", 1 << 10}, {"100KB", 100 << 10}, {"1MB", MaxConfigFileSize - 64}} {
		data := benchFile(size.bytes)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(data, "bench.yml"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchFile returns a valid file of about size bytes: networks, a ports
// list, accept and deny rules, each taking a share, with an anchor and its
// aliases as a file may have.
func benchFile(size int) []byte {
	var b strings.Builder
	b.WriteString("networks:\n")
	n := 0
	for b.Len() < size/3 {
		fmt.Fprintf(&b, "  net%d: [10.%d.%d.0/24, \"fd00:%x::/64\"]\n", n, n>>8&255, n&255, n)
		n++
	}
	b.WriteString("ports: [")
	for p := 0; b.Len() < size/2 && p < 1<<16; p++ {
		if p > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", p)
	}
	b.WriteString("]\nfilters:\n  accept:\n    - &web {proto: [tcp], dport: [80, 443, \"8000-8100\"]}\n")
	for r := 0; b.Len() < size*3/4; r++ {
		fmt.Fprintf(&b, "    - {src: [192.168.%d.0/24], <<: *web}\n", r&255)
	}
	b.WriteString("  deny:\n")
	for r := 0; b.Len() < size-40; r++ {
		fmt.Fprintf(&b, "    - {dst: [172.16.%d.%d/32], zone: [%d]}\n", r>>8&255, r&255, r&65535)
	}
	b.WriteString("conntrack: {max_series: 4096}\n")
	return []byte(b.String())
}
