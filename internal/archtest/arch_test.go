// Package archtest holds the tests that keep the code's shape what
// docs/ARCHITECTURE.md says it is: the import layering between the
// project's packages, and protocol code that reads no wall clock.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/swarmtrain/swarmtrain/"

// layers is, for every package of the module, which of the module's
// packages it may import (a trailing "/..." takes in the subpackages).
// It is the picture in docs/ARCHITECTURE.md; a new package must be
// added here, so the doc and the code cannot drift apart silently.
var layers = map[string][]string{
	"compression":       {},
	"p2p":               {"internal/..."},
	"trainer":           {"compression", "trainer/text", "trainer/engine", "trainer/kernels", "internal/..."},
	"trainer/text":      {},
	"trainer/engine":    {"trainer/kernels"},
	"trainer/kernels":   {},
	"gossip":            {},
	"gossip/allreduce":  {"gossip", "compression"},
	"gossip/statesync":  {"gossip", "compression"},
	"gossip/datasync":   {"gossip"},
	"gossip/gossiptest": {"gossip", "internal/..."},
	"gossip/swarm":      {"gossip", "gossip/allreduce"},
	"gossip/averaging":  {"gossip", "gossip/allreduce", "gossip/swarm", "compression"},
	"node":              {"gossip/...", "gossip", "trainer/...", "trainer", "compression", "p2p", "node/device", "internal/..."},
	"node/device":       {},
	"cmd/swarmtrain":    {"node", "node/device", "trainer", "trainer/...", "compression", "p2p", "gossip", "gossip/...", "internal/..."},
	// internal: shared helpers, below everything.
	"internal/atomicfile": {},
	"internal/buildinfo":  {},
	"internal/netlab":     {},
	"internal/shapes":     {},
	"internal/testutil":   {},
	"internal/archtest":   {},
}

// root is the module's root directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", dir, err)
	}
	return dir
}

// goFiles lists the module's Go files by package directory (relative,
// slash-separated), skipping testdata and hidden directories.
func goFiles(t *testing.T, tests bool) map[string][]string {
	t.Helper()
	base := root(t)
	out := map[string][]string{}
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != base && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") != tests {
			return nil
		}
		rel, err := filepath.Rel(base, filepath.Dir(path))
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = append(out[filepath.ToSlash(rel)], path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func allowed(rules []string, imp string) bool {
	for _, r := range rules {
		if r == imp || (strings.HasSuffix(r, "/...") && strings.HasPrefix(imp, strings.TrimSuffix(r, "...")) && imp != strings.TrimSuffix(r, "/...")) {
			return true
		}
	}
	return false
}

// TestLayering reads every package's imports (build tags ignored: every
// file counts) and checks them against layers.
func TestLayering(t *testing.T) {
	fset := token.NewFileSet()
	for pkg, files := range goFiles(t, false) {
		rules, ok := layers[pkg]
		if !ok {
			t.Errorf("package %s is not in the layering table: add it (and to docs/ARCHITECTURE.md)", pkg)
			continue
		}
		for _, path := range files {
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, is := range f.Imports {
				imp, _ := strconv.Unquote(is.Path.Value)
				rel, ours := strings.CutPrefix(imp, module)
				if !ours || rel == pkg {
					continue
				}
				if !allowed(rules, rel) {
					t.Errorf("%s imports %s: %s may import only %v (docs/ARCHITECTURE.md)", filepath.Base(path), rel, pkg, rules)
				}
			}
		}
	}
}

// protocolPackages read time only through a clock passed in, so their
// tests can drive time.
var protocolPackages = []string{"gossip", "gossip/"}

var wallClock = []string{"Now", "Since", "Until", "After", "AfterFunc", "Sleep", "NewTimer", "NewTicker", "Tick"}

// TestProtocolsReadNoWallClock finds calls of time.Now, time.After and
// the like in the protocol packages' non-test code.
func TestProtocolsReadNoWallClock(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	for pkg, files := range goFiles(t, false) {
		if !slices.ContainsFunc(protocolPackages, func(p string) bool { return pkg == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(pkg, p)) }) {
			continue
		}
		for _, path := range files {
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			names := map[string]string{} // local name → "time" or "context"
			for _, is := range f.Imports {
				if p, _ := strconv.Unquote(is.Path.Value); p == "time" || p == "context" {
					name := p
					if is.Name != nil {
						name = is.Name.Name
					}
					names[name] = p
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				id, ok := sel.X.(*ast.Ident)
				if !ok {
					return true
				}
				if (names[id.Name] == "time" && slices.Contains(wallClock, sel.Sel.Name)) ||
					(names[id.Name] == "context" && (sel.Sel.Name == "WithTimeout" || sel.Sel.Name == "WithDeadline")) {
					t.Errorf("%s: %s.%s reads the wall clock: use the clock passed in", fset.Position(sel.Pos()), id.Name, sel.Sel.Name)
				}
				return true
			})
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d files: the package list is wrong", checked)
	}
}
