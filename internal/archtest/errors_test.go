package archtest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// errorTables are the files that may spell wire codes: the disconnect
// table and one error table per adapter.
var errorTables = map[string]bool{
	"hub/errors.go":         true,
	"clientproto/errors.go": true,
	"api/errors.go":         true,
	"centrifugo/errors.go":  true,
	"gateway/errors.go":     true,
	"circle/errors.go":      true,
	"schedapi/errors.go":    true,
}

// wireLiterals are the ways a wire code gets written by hand. Each applies
// to the packages under its prefix ("" is all of internal/).
var wireLiterals = []struct {
	prefix string
	re     *regexp.Regexp
	what   string
}{
	{"", regexp.MustCompile(`\bCode:\s*[0-9]`), "a numeric code in a struct literal"},
	{"", regexp.MustCompile(`[Cc]ode\s*(==|!=|<=|>=|<|>)\s*[0-9]{3,4}\b`), "a comparison with a numeric code"},
	{"", regexp.MustCompile(`\bcase\s+[0-9]{3,4}\b`), "a switch on numeric codes"},
	{"", regexp.MustCompile(`Disconnect\{\s*[0-9]`), "a disconnect outside the hub's table"},
	{"", regexp.MustCompile(`\b3[05][0-9]{2}\b`), "a Centrifugo disconnect code"},
	{"", regexp.MustCompile(`&hub\.Error\{`), "a hand-coded hub error"},
	{"circle/", regexp.MustCompile(`circles\.NewError\(`), "a JSON-RPC error built outside the table"},
	{"api/", regexp.MustCompile(`http\.Status(?:[A-Z]\w*)`), "an HTTP status outside the table"},
	{"gateway/", regexp.MustCompile(`http\.Status(?:[A-Z]\w*)`), "an HTTP status outside the table"},
	{"schedapi/", regexp.MustCompile(`http\.Status(?:[A-Z]\w*)`), "an HTTP status outside the table"},
}

// allowedStatuses are success statuses, which are no error mapping.
var allowedStatuses = regexp.MustCompile(`http\.Status(OK|NoContent)\b`)

// TestNoWireCodesOutsideTables fails when a non-test source file under
// internal/ writes a wire error code outside the tables.
func TestNoWireCodesOutsideTables(t *testing.T) {
	root := filepath.Join("..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))
		if errorTables[rel] || strings.HasPrefix(rel, "bench/") {
			return nil // bench is a load generator, not an adapter
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for n, line := range strings.Split(string(src), "\n") {
			code, _, _ := strings.Cut(line, "//")
			code = allowedStatuses.ReplaceAllString(code, "")
			for _, w := range wireLiterals {
				if !strings.HasPrefix(rel, w.prefix) || !w.re.MatchString(code) {
					continue
				}
				t.Errorf("%s:%d: %s (%q); use the error tables", rel, n+1, w.what, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The error vocabulary is a leaf: every package may use it.
func TestErrsIsALeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./../../internal/errs").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, module+"/") && dep != module+"/internal/errs" {
			t.Errorf("internal/errs imports %s", dep)
		}
	}
}
