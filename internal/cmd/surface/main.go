// Command surface prints the module's package graph and the names each
// package exports, the figures issue 19 compares before and after:
//
//	go run ./internal/cmd/surface
//
// It counts, for every package of the module, the imports of other packages
// of the module, and the exported top-level names (functions, types,
// variables, constants) and exported methods of exported types in its
// non-test files. Commands and internal packages are listed apart, since
// they promise nothing to importers.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// pkg is the part of `go list -json` this command reads.
type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Imports    []string
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "surface:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	m, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return fmt.Errorf("go list -m: %w", err)
	}
	mod := strings.TrimSpace(string(m))
	out, err := exec.Command("go", "list", "-json", mod+"/...").Output()
	if err != nil {
		return fmt.Errorf("go list: %w", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return fmt.Errorf("no packages listed in module %s", mod)
	}
	inModule := make(map[string]bool, len(pkgs))
	for _, p := range pkgs {
		inModule[p.ImportPath] = true
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].ImportPath < pkgs[j].ImportPath })

	var edges, public, total int
	fmt.Fprintf(w, "%-28s %8s %8s %s\n", "package", "imports", "exported", "kind")
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		if rel == "" {
			rel = "."
		}
		n := 0
		for _, imp := range p.Imports {
			if inModule[imp] {
				n++
			}
		}
		edges += n
		names, err := exported(p)
		if err != nil {
			return err
		}
		kind := "public"
		switch {
		case p.Name == "main":
			kind = "command"
		case strings.HasPrefix(rel, "internal/") || strings.Contains(rel, "/internal/"):
			kind = "internal"
		default:
			public += names
		}
		total += names
		fmt.Fprintf(w, "%-28s %8d %8d %s\n", rel, n, names, kind)
	}
	fmt.Fprintf(w, "%d packages, %d import edges inside the module, %d exported names (%d in public packages)\n",
		len(pkgs), edges, total, public)
	return nil
}

// exported counts the exported top-level names and the exported methods of
// exported types in p's non-test files.
func exported(p pkg) (int, error) {
	fset := token.NewFileSet()
	n := 0
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", name, err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil || receiverExported(d.Recv) {
					n++
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							n++
						}
					case *ast.ValueSpec:
						for _, id := range s.Names {
							if id.IsExported() {
								n++
							}
						}
					}
				}
			}
		}
	}
	return n, nil
}

// receiverExported reports whether a method's receiver type is exported.
func receiverExported(recv *ast.FieldList) bool {
	if len(recv.List) == 0 {
		return false
	}
	t := recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.IsExported()
		default:
			return false
		}
	}
}
