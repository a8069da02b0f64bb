package switchback_test

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootImportsOnlyTheStandardLibrary keeps the domain free of databases,
// HTTP and SIP: those live in internal/ and depend on it, not the reverse.
func TestRootImportsOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/switchback/switchback" {
			t.Errorf("the root package depends on %s", dep)
		}
	}
	forbidden := []string{"database/sql", "net/http", "github.com/emiago/sipgo"}
	out, err = exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f {
				t.Errorf("the root package imports %s", f)
			}
		}
	}
}

// TestEveryPackageHasOneDocComment checks each package of the module has
// exactly one package doc comment.
func TestEveryPackageHasOneDocComment(t *testing.T) {
	dirs := map[string]bool{}
	filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	for dir := range dirs {
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		for name, p := range pkgs {
			docs := 0
			for _, f := range p.Files {
				if f.Doc != nil {
					docs++
				}
			}
			if docs != 1 {
				t.Errorf("package %s in %s has %d package doc comments, want 1", name, dir, docs)
			}
		}
	}
}
