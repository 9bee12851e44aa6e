package testrun_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/labtest"
)

// A documented command without -timeout gets go test's default of 10
// minutes, which a run on the real host does not fit in: the run would stop
// before creating anything, or (without the time check) be cut half way.
// Every command README.md and docs/ give — a `go test` of a package, or the
// reviewer's test binary — names its -timeout.
func TestEveryDocumentedRunCarriesATimeout(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	docs = append(docs, filepath.Join(root, "README.md"))
	checked := 0
	for _, path := range docs {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		for _, cmd := range documentedRuns(string(b)) {
			checked++
			if strings.Contains(cmd, "go test") {
				assert.Regexp(t, `(^|\s)-timeout[= ]\S+`, cmd, "%s: %q has no -timeout", filepath.Base(path), cmd)
			} else {
				assert.Regexp(t, `(^|\s)-test\.timeout[= ]\S+`, cmd, "%s: %q has no -test.timeout", filepath.Base(path), cmd)
			}
		}
	}
	assert.Greater(t, checked, 5, "the documented commands were found")
}

var (
	inlineCode = regexp.MustCompile("`([^`\n]+)`")
	goTestRun  = regexp.MustCompile(`go test\b[^#]*\s\./\S*`)
	binaryRun  = regexp.MustCompile(`\S*(ccci-acceptance|acceptance\.test)\s+-test\.[^#]*`)
)

// documentedRuns are the commands in a Markdown text's code (fenced lines
// and inline spans) that run tests: `go test … ./pkg`, or a test binary.
func documentedRuns(md string) []string {
	var code []string
	fenced := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			code = append(code, line)
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
			code = append(code, m[1])
		}
	}
	var out []string
	for _, c := range code {
		out = append(out, goTestRun.FindAllString(c, -1)...)
		out = append(out, binaryRun.FindAllString(c, -1)...)
	}
	return out
}

// sourceFiles are the module's non-test Go files (relative paths), its
// hidden, output and testdata directories left out.
func sourceFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	require.NoError(t, filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "out" || d.Name() == "dist" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return nil
	}))
	require.NotEmpty(t, files)
	return files
}

// README's "What is where" names every package of the module, so a
// newcomer finds each one's job there.
func TestEveryPackageIsInTheReadme(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(readme), "## What is where")
	require.True(t, ok, "README.md has its What is where section")
	table, _, _ = strings.Cut(table, "\n## ")
	var pkgs []string
	for _, f := range sourceFiles(t, root) {
		pkgs = append(pkgs, filepath.Dir(f))
	}
	slices.Sort(pkgs)
	for _, p := range slices.Compact(pkgs) {
		if p != "." {
			assert.Regexp(t, "`"+regexp.QuoteMeta(p)+"/?`", table, "README.md's What is where does not name %s", p)
		}
	}
}

// Every CCCI_* key the harness's code reads (any non-test Go file of the
// module) is in docs/configuration.md, which claims to list them all.
func TestEveryKeyTheCodeReadsIsDocumented(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs/configuration.md"))
	require.NoError(t, err)
	key := regexp.MustCompile(`"(CCCI_[A-Z0-9_]*[A-Z0-9])`)
	read := map[string]string{} // key → a file that reads it
	for _, f := range sourceFiles(t, root) {
		b, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		for _, m := range key.FindAllStringSubmatch(string(b), -1) {
			read[m[1]] = f
		}
	}
	require.NotEmpty(t, read)
	for k, file := range read {
		assert.True(t, strings.Contains(string(doc), "`"+k+"`") || strings.Contains(string(doc), "`"+k+"="),
			"%s (read in %s) is not in docs/configuration.md", k, file)
	}
}

// Every wait is in one table: a setting (config.Timeouts) or a fixed bound
// (helpers/bounds), never a duration written where it is waited on, where
// nobody checks that it fits in the wait around it. Polling intervals and
// clock-skew allowances are not waits; the lab's own tooling (fixtures'
// commands, labtest, labtarget) sets up the lab and is no part of a run.
func TestEveryWaitIsInTheTable(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	literal := regexp.MustCompile(`(WithTimeout\(|Eventually\(|\.Run\(|RunInput\(|time\.After\(|Timeout:|Timeout =).*\btime\.(Second|Minute|Hour)\b`)
	for _, f := range sourceFiles(t, root) {
		if strings.HasPrefix(f, "helpers/bounds/") || strings.HasPrefix(f, "fixtures/") || strings.HasPrefix(f, "helpers/lab") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		for i, line := range strings.Split(string(b), "\n") {
			assert.False(t, literal.MatchString(line), "%s:%d waits a literal duration; name it in helpers/bounds: %s", f, i+1, strings.TrimSpace(line))
		}
	}
}

// make breakages makes each breakage issue 20 names by replacing a line of
// the code; a refactor that moves that line would leave the breakage
// unmade, and its survival unseen. Each line it replaces is still there,
// exactly once.
func TestEveryBreakageStillMatchesTheCode(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	script, err := os.ReadFile(filepath.Join(root, "tools/breakages.sh"))
	require.NoError(t, err)
	line := regexp.MustCompile(`(?m)^breakage (\S+) (\S+) '([^']*)' '[^']*'$`)
	rows := line.FindAllStringSubmatch(string(script), -1)
	require.GreaterOrEqual(t, len(rows), 7, "the breakages were read")
	for _, m := range rows {
		name, file, old := m[1], m[2], m[3]
		b, err := os.ReadFile(filepath.Join(root, file))
		if !assert.NoError(t, err, "breakage %s", name) {
			continue
		}
		// perl's \Q…\E: the text as written ('\n' is a backslash and an n, as in the Go source).
		assert.Equal(t, 1, strings.Count(string(b), old), "breakage %s: %s holds %q once", name, file, old)
	}
}

// make test runs every package once: the ones whose tests reach the lab
// (through labtest, labtarget or testrun) one at a time, the others in
// parallel before them. A package left out would never run in CI; a lab
// package in the parallel run would share the lab with another.
func TestMakeTestRunsEveryPackageOnceAndTheLabsOneAtATime(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on this machine (.ci/run installs it)")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dry := exec.Command("make", "-n", "-s", "test")
	dry.Dir = root
	out, err := dry.CombinedOutput()
	require.NoError(t, err, "make -n test:\n%s", out)
	ran := map[string]string{} // package → the run it is in
	runs := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !(strings.Contains(line, "go test ") || strings.Contains(line, "gotestsum ")) || !strings.Contains(line, "CCCI_REQUIRE_LAB=1") {
			continue
		}
		runs++
		kind := "parallel"
		if strings.Contains(line, " -p 1 ") {
			kind = "one at a time"
			for _, kv := range labtest.ShortWaits {
				assert.Contains(t, strings.Fields(line), kv, "make test's lab phase waits the lab's short bounds (labtest.ShortWaits)")
			}
		}
		for _, f := range strings.Fields(line) {
			f = strings.TrimSuffix(f, ";") // the run's status is kept for the times summary
			if strings.HasPrefix(f, "github.com/") {
				assert.NotContains(t, ran, f, "make test runs %s twice", f)
				ran[f] = kind
			}
		}
	}
	require.Equal(t, 2, runs, "make test's two go test runs were found in:\n%s", out)

	list := exec.Command("go", "list", "-json", "./...")
	list.Dir = root
	js, err := list.Output()
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(js))
	pkgs := 0
	for dec.More() {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		require.NoError(t, dec.Decode(&p))
		pkgs++
		want := "parallel"
		for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
			if slices.Contains([]string{"labtest", "labtarget", "testrun"}, path.Base(imp)) && strings.HasPrefix(imp, "github.com/cc-ci/acceptance/helpers/") {
				want = "one at a time"
			}
		}
		assert.Equal(t, want, ran[p.ImportPath], "make test runs %s", p.ImportPath)
	}
	assert.Len(t, ran, pkgs, "make test runs exactly the module's packages")
}
