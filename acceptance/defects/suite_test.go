package defects

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/stretchr/testify/require"
)

// One row's run: the acceptance suite run as go test -json would run it,
// against one target, and what it said and wrote.

type result struct {
	action string // pass, fail, skip
	output string
	subs   map[string]string // each sentence (subtest) of the test → pass, fail, skip
}

// skippedSomething: the test, or one of its sentences, skipped.
func (r *result) skippedSomething() bool {
	if r.action == "skip" {
		return true
	}
	for _, a := range r.subs {
		if a == "skip" {
			return true
		}
	}
	return false
}

// written is what a run of the suite wrote: its -json stream, its evidence
// directory and its TMPDIR.
type written struct {
	output            []byte
	reviewDir, tmpDir string
}

// runSuite runs the acceptance suite against one target and collects each
// top-level test's result and output (its subtests' included).
func runSuite(t *testing.T, suite, repoBase string, env ...string) (map[string]*result, written) {
	t.Helper()
	w := written{reviewDir: t.TempDir(), tmpDir: t.TempDir()}
	// As `go test -json` runs it: in the package's directory, through test2json.
	cmd := exec.Command("go", "tool", "test2json", "-t", suite, "-test.v=test2json", "-test.count=1", "-test.timeout=25m")
	cmd.Dir = labtest.AcceptanceDir()
	// Short waits: a target that hangs must fail in bounded time.
	cmd.Env = append(os.Environ(), "CCCI_ACCEPTANCE=1", "CCCI_REVIEW_FILE="+filepath.Join(w.reviewDir, "REVIEW.md"), "TMPDIR="+w.tmpDir,
		"CCCI_OUT_DIR="+filepath.Join(w.reviewDir, "out"),
		"CCCI_BASE_REPO_URL="+repoBase+"/cc-ci.git", "CCCI_SECRETS_REPO_URL="+repoBase+"/cc-ci-secrets.git")
	cmd.Env = append(append(cmd.Env, labtest.ShortWaits...), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.Output() // a failing suite exits 1: the events say what happened
	w.output = append(out, stderr.Bytes()...)
	results := map[string]*result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct{ Action, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		top := strings.SplitN(ev.Test, "/", 2)[0]
		key := top
		if strings.HasPrefix(top, evidence.LiveRebuildTest) {
			key = evidence.LiveRebuildTest // C4's look at the end of the run is C4's
		}
		r := results[key]
		if r == nil {
			r = &result{}
			results[key] = r
		}
		r.output += ev.Output
		if ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip" {
			if ev.Test == top {
				r.action = worse(r.action, ev.Action)
			} else {
				if r.subs == nil {
					r.subs = map[string]string{}
				}
				r.subs[ev.Test] = ev.Action
			}
		}
	}
	require.NotEmpty(t, results, "the suite reported no test; stderr:\n%s", labtest.Tail(stderr.String()))
	return results, w
}

// worse is the outcome of two tests judged as one: a failure of either,
// else a skip of either, else a pass.
func worse(a, b string) string {
	rank := map[string]int{"": 0, "pass": 1, "skip": 2, "fail": 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// verdictLatency is C4's "units verdict in Ns" (how long it waited on the
// units after the switch), or "-" when C4 never got that far.
func verdictLatency(r *result) string {
	if r == nil {
		return "-"
	}
	m := regexp.MustCompile(`units verdict in ([0-9.]+s)`).FindStringSubmatch(r.output)
	if m == nil {
		return "-"
	}
	return m[1]
}

// targetsRoot is the lab's directory of targets, from the good target's key file.
func targetsRoot(goodKey string) string { return filepath.Dir(filepath.Dir(filepath.Dir(goodKey))) }

// targetSettings are the settings a target needs besides the lab's
// (fixtures.SettingsFile, a flavour's), as KEY=value environment entries.
func targetSettings(t *testing.T, dir string) []string {
	t.Helper()
	file := filepath.Join(dir, fixtures.SettingsFile)
	if _, err := os.Lstat(file); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	kv, err := config.SettingsFile(file)
	require.NoError(t, err)
	var env []string
	for k, v := range kv {
		env = append(env, k+"="+v)
	}
	return env
}

// digests maps each file of dir to its sha256.
func digests(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return out
}
