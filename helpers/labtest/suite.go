package labtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/cc-ci/acceptance/helpers/leakscan"
)

var suite struct {
	once sync.Once
	bin  string
	out  []byte
	err  error
}

// Suite is the acceptance suite's test binary, the leak scanner embedded, built once per process
// into a temp directory that Main removes (a test that runs the suite as a
// child, as go test would, runs it from the package's directory:
// AcceptanceDir).
func Suite(t testing.TB) string {
	t.Helper()
	suite.once.Do(func() {
		dir, err := os.MkdirTemp("", "ccci-suite-")
		if err != nil {
			suite.err = err
			return
		}
		// As make dist builds the reviewer's: the leak scanner embedded, so
		// C3 builds nothing on each run (a row used to build it each time).
		if _, suite.err = leakscan.BuildBinary(context.Background(), filepath.Join(AcceptanceDir(), "..", "helpers", "leakscan", "dist")); suite.err != nil {
			return
		}
		suite.bin = filepath.Join(dir, "acceptance.test")
		suite.out, suite.err = exec.Command("go", "test", "-c", "-tags", "ccci_dist", "-o", suite.bin, AcceptanceDir()).CombinedOutput()
	})
	if suite.err != nil {
		t.Fatalf("build the acceptance suite: %v\n%s", suite.err, suite.out)
	}
	return suite.bin
}

// AcceptanceDir is the acceptance package's directory, where go test runs its binary.
func AcceptanceDir() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "acceptance")
}

// Main runs a package's tests, then removes the suite Suite built: a
// package whose tests use Suite calls it from its TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if suite.bin != "" {
		_ = os.RemoveAll(filepath.Dir(suite.bin))
	}
	return code
}
