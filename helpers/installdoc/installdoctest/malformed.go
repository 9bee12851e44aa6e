// Package installdoctest is installdoc's table of malformed install.md
// documents, for every test that must refuse them: the parser's and
// lint-install's.
package installdoctest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Malformed is one bad document: Path (testdata/malformed/NAME.md) and the
// texts its error must contain, each naming install.md:LINE.
type Malformed struct {
	Name string
	Path string
	Src  []byte
	Want []string
}

// MalformedDocs reads the table: each NAME.md with its NAME.want.
func MalformedDocs(t testing.TB) []Malformed {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	paths, err := filepath.Glob(filepath.Join(filepath.Dir(here), "..", "testdata", "malformed", "*.md"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("the malformed-document table is empty or unreadable: %v", err)
	}
	var out []Malformed
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(strings.TrimSuffix(p, ".md") + ".want")
		if err != nil {
			t.Fatalf("%s has no .want: %v", p, err)
		}
		out = append(out, Malformed{Name: filepath.Base(p), Path: p, Src: src,
			Want: strings.Split(strings.TrimSpace(string(want)), "\n")})
	}
	return out
}
