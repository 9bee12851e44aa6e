package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/gitexec"
)

// A checkout's commit; "-dirty" once a harness file changes, not when only
// the evidence files (REVIEW.*) do; "unknown" outside a checkout.
func TestCheckoutIsHEADAndSaysDirty(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		cmd.Dir, cmd.Env = dir, gitexec.Env()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
		return strings.TrimSpace(string(out))
	}
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	git("init", "-q")
	write("main.go", "package main\n")
	write("REVIEW.md", "# evidence\n")
	git("add", ".")
	git("commit", "-qm", "c")
	head := git("rev-parse", "HEAD")

	assert.Equal(t, head, checkout(dir))
	write("REVIEW.md", "# evidence\n\n## Run r1\n")
	assert.Equal(t, head, checkout(dir), "a run's own evidence does not make the harness dirty")
	write("main.go", "package main // changed\n")
	assert.Equal(t, head+"-dirty", checkout(dir))
	assert.Equal(t, "unknown", checkout(t.TempDir()))
}

// This very test binary: go test stamps no VCS data, so the answer comes
// from the checkout it was built in.
func TestHarnessOfThisBuild(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not built in a git checkout")
	}
	assert.True(t, strings.HasPrefix(Harness(), strings.TrimSpace(string(head))), "Harness() = %q", Harness())
}

func TestTheLinkTimeVersionWins(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	Version = "v1.2.3-kit"
	assert.Equal(t, "v1.2.3-kit", Harness())
}
