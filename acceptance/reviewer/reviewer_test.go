// Package reviewer proves docs/reviewing.md: the kit `make dist` builds —
// one static acceptance test binary with the leak scanner embedded, the ccci
// tool and their checksums — re-verifies cc-ci from a machine with no Go
// toolchain, given only the kit, a settings file and the keys it names.
package reviewer

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/labtest"
)

// noGoPATH is the reviewer's PATH: the system's, without a Go toolchain.
const noGoPATH = "/usr/sbin:/usr/bin:/sbin:/bin"

func TestTheReviewersKitReverifiesWithoutGo(t *testing.T) {
	cfg := labtest.GoodTarget(t)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	kit := t.TempDir()
	start := time.Now()
	out, err := exec.Command("make", "-C", root, "--no-print-directory", "dist", "DIST="+kit).CombinedOutput()
	require.NoError(t, err, "make dist: %s", out)
	t.Logf("make dist in %s", time.Since(start).Round(time.Millisecond))
	out, err = run(t, kit, nil, "sha256sum", "-c", "SHA256SUMS")
	require.NoError(t, err, "the kit's checksums: %s", out)

	_, err = exec.Command("env", "PATH="+noGoPATH, "sh", "-c", "command -v go").Output()
	require.Error(t, err, "the reviewer's PATH (%s) must not have go", noGoPATH)

	// The reviewer's directory: the settings file, nothing else.
	settings, err := os.ReadFile(config.LabSettings)
	require.NoError(t, err)

	for _, c := range []struct {
		target string
		pass   bool
		cause  string
	}{{"good", true, ""}, {"d8-no-static-part", false, "states the byte-identical closure"}} {
		t.Run(c.target, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "ccci.env"), settings, 0o600))
			env := append([]string{"CCCI_ACCEPTANCE=1", "CCCI_CONFIG=" + filepath.Join(dir, "ccci.env")}, labtest.ShortWaits...)
			if c.target != "good" {
				env = append(env, "CCCI_BASE_REPO_URL="+labtest.Target(cfg.Target.BaseRepoURL, c.target),
					"CCCI_SECRETS_REPO_URL="+labtest.Target(cfg.Target.SecretsRepoURL, c.target))
			}
			args := []string{"-test.count=1", "-test.v", "-test.timeout=40m"}
			if !c.pass {
				// The test that owns the cause: it needs no machine, so the run creates none.
				args = append(args, "-test.run=^TestC5HonestD8$")
			}
			start := time.Now()
			out, err := run(t, dir, env, filepath.Join(kit, "ccci-acceptance"), args...)
			t.Logf("the kit's run against %s: %s", c.target, time.Since(start).Round(time.Millisecond))
			if !c.pass {
				require.Error(t, err, "the kit must fail on %s", c.target)
				assert.Contains(t, string(out), c.cause)
				return
			}
			require.NoError(t, err, "the kit must pass on the good target:\n%s", labtest.Tail(string(out)))
			assert.Contains(t, string(out), "leak scanner: embedded in this binary", "C3's scan costs no compile")
			// The reviewer checks the run's evidence with the kit's own tool.
			signers := filepath.Join(filepath.Dir(cfg.Evidence.SigningKey), "allowed_signers")
			out, err = run(t, dir, nil, filepath.Join(kit, "ccci"), "verify", signers, filepath.Join(dir, "REVIEW.jsonl"))
			require.NoError(t, err, "ccci verify: %s", out)
			assert.Contains(t, string(out), "1 entries, chained and signed")
			// …and sees which harness judged: the commit the kit was built from,
			// as the kit's ccci says it.
			head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
			require.NoError(t, err)
			harness, err := run(t, dir, nil, filepath.Join(kit, "ccci"), "harness")
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(string(harness), strings.TrimSpace(string(head))), "ccci harness: %s", harness)
			review, err := os.ReadFile(filepath.Join(dir, "REVIEW.md"))
			require.NoError(t, err)
			assert.Contains(t, string(review), "- harness: `"+strings.TrimSpace(string(harness))+"`", "the evidence names the kit's commit")
		})
	}
}

// run runs a command in dir with only the reviewer's environment.
func run(t *testing.T, dir string, env []string, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + noGoPATH, "HOME=" + os.Getenv("HOME"), "TMPDIR=" + t.TempDir()}, env...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.Bytes(), err
}
