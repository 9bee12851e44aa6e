package testrun_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/labtest"
)

// The README's debugging loop, run exactly as written (its lines, from the
// module root): keep a machine, run the checks on it again twice without
// installing again, then a last time and destroy it.
func TestTheREADMEIterationLoopWorksAsWritten(t *testing.T) {
	t.Parallel() // beside TestTimeoutDeadlineTearsDownFirst: each judges its own runs' instances only
	c, cfg := faultLab(t)
	lines := readmeLoop(t)
	require.Len(t, lines, 3, "the README's loop: keep, again, last")
	dir := t.TempDir()
	review := filepath.Join(dir, "REVIEW.md")
	env := append(append(os.Environ(), labtest.ShortWaits...), "CCCI_STATE_FILE="+filepath.Join(dir, "state.json"), "CCCI_REVIEW_FILE="+review,
		"CCCI_OUT_DIR="+filepath.Join(dir, "out"), "TMPDIR="+t.TempDir(), roomForOneMore(cfg))
	// The loop's runs, from their evidence: the instances it may call its own.
	runs := func() (ids []string) {
		es, _ := evidence.Read(evidence.PathsFor(review).JSONL)
		for _, e := range es {
			ids = append(ids, e.RunID)
		}
		return ids
	}
	t.Cleanup(func() { // only if a step stopped before destroying its machine
		for _, name := range instancesOfRuns(t, c, cfg, runs()) {
			destroyLeftover(t, c, cfg, name)
		}
	})
	for i, line := range []string{lines[0], lines[1], lines[1], lines[2]} {
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir, cmd.Env = "../..", env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "README loop, command %d: %s\n%s", i+1, line, out)
	}
	es, err := evidence.Read(evidence.PathsFor(review).JSONL)
	require.NoError(t, err)
	require.Len(t, es, 4, "each command wrote its run's evidence")
	assert.Empty(t, es[0].NotEvidence, "the first run created and installed its machine: a cold run")
	assert.NotEmpty(t, es[0].Machine)
	for _, e := range es[1:] {
		assert.Contains(t, e.NotEvidence, "SKIP_install=1", "run %s reused the machine and its install", e.RunID)
		assert.Equal(t, "pass", e.Outcome, "run %s", e.RunID)
	}
	assert.Empty(t, instancesOfRuns(t, c, cfg, runs()), "the last step destroyed the machine")
	_, err = os.Stat(filepath.Join(dir, "state.json"))
	assert.True(t, os.IsNotExist(err), "and removed the state file")
}

// readmeLoop returns the command lines of the README's debugging loop.
func readmeLoop(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "## Keeping a machine to debug a check")
	require.True(t, ok, "README.md has the section")
	_, block, ok := strings.Cut(section, "```sh\n")
	require.True(t, ok)
	block, _, _ = strings.Cut(block, "```")
	var out []string
	for _, l := range strings.Split(block, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
