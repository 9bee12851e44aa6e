// Package cijob runs the CI job of .drone.yml as Drone's exec runner would —
// its commands, in order, in one `bash -e` script, in a fresh workspace (a
// copy of this repository), with the step's environment and its secrets —
// against the lab: the lab's values stand in for the real host's settings
// and for the Drone secrets. The job must pass on the good target, fail on a
// broken one, leave no secret file behind and print no secret.
package cijob

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/labtarget"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// step is the part of a Drone exec pipeline step the runner uses.
type step struct {
	Name        string
	Environment map[string]yaml.Node
	Commands    []string
}

// The job runs three times, each in a fresh workspace, as Drone would on
// three pushes, with one runner: the evidence directory the runner's
// configuration names (CCCI_EVIDENCE_DIR) is all that persists. It holds the
// runner's chain — here the lab's, which the targets' D8 evidence cites —
// and the keys C5 trusts. The second run's target cites the first run (its
// maintainers committed the record after it passed, and nothing else): C5
// finds that signed entry in the persistent chain. The third run's target is
// broken and fails, naming the cause. Only the first run needs a machine:
// the other two are about the chain and C5, which judges the repos and the
// evidence alone, so the runner's environment says CCCI_MACHINE=none for
// them (the good target's install is proven by the first run, and again by
// the defect matrix's good row).
func TestTheDroneJobPassesOnTheGoodTargetAndFailsOnABrokenOne(t *testing.T) {
	cfg := labtest.GoodTarget(t)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	job := readJob(t, filepath.Join(root, ".drone.yml"))
	settings, secrets := split(t, job)
	scanner := leakscan.New(leakscan.Needles(allSecrets(t, cfg), 0, nil))
	evidenceDir := t.TempDir()
	copyFile(t, cfg.Evidence.D8Chain, filepath.Join(evidenceDir, "REVIEW.jsonl"))
	copyFile(t, cfg.Evidence.D8Signers, filepath.Join(evidenceDir, "allowed_signers"))
	chainLen := func() int {
		es, err := evidence.Chain(filepath.Join(evidenceDir, "REVIEW.jsonl"))
		require.NoError(t, err, "the persistent chain holds")
		return len(es)
	}

	var first evidence.Entry
	for _, c := range []struct {
		target  string
		pass    bool
		machine bool
	}{{"good", true, true}, {"cites-the-first-run", true, false}, {"d8-cites-unknown-run", false, false}} {
		t.Run(c.target, func(t *testing.T) {
			if c.target == "cites-the-first-run" {
				require.NotEmpty(t, first.RunID, "the first run wrote its entry")
				c.target = citingTarget(t, cfg, first)
			}
			repo := func(u string) string { return labtest.Target(u, c.target) }
			env := map[string]string{"CCCI_EVIDENCE_DIR": evidenceDir} // the runner's environment
			if !c.machine {
				env["CCCI_MACHINE"] = "none"
			}
			for k := range settings {
				env[k] = settings[k] // the real host's value, replaced below where the lab has one
			}
			lab, err := config.SettingsFile(config.LabSettings)
			require.NoError(t, err)
			for k, v := range lab {
				env[k] = v
			}
			for _, kv := range labtest.ShortWaits { // the lab's, not the job's subject
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			env["CCCI_BASE_REPO_URL"] = repo(cfg.Target.BaseRepoURL)
			delete(env, "CCCI_SECRETS_REPO_URL") // from the Drone secret, as on the runner
			for _, k := range []string{"CCCI_INCUS_CLIENT_CERT", "CCCI_INCUS_CLIENT_KEY", "CCCI_INCUS_SERVER_CERT", "CCCI_AGE_KEY_FILE", "CCCI_SIGNING_KEY",
				"CCCI_D8_CHAIN", "CCCI_D8_ALLOWED_SIGNERS"} {
				delete(env, k) // the job writes these files from its secrets, or finds them in the evidence directory
			}
			env["INCUS_CLIENT_CERT"] = fileText(t, cfg.Incus.ClientCert)
			env["INCUS_CLIENT_KEY"] = fileText(t, cfg.Incus.ClientKey)
			env["INCUS_SERVER_CERT"] = fileText(t, cfg.Incus.ServerCert)
			env["BOOTSTRAP_AGE_KEY"] = fileText(t, cfg.Target.AgeKeyFile)
			env["SECRETS_REPO_URL"] = repo(cfg.Target.SecretsRepoURL)
			env["REVIEW_SIGNING_KEY"] = fileText(t, cfg.Evidence.SigningKey)
			for k := range secrets {
				require.Contains(t, env, k, "the job's secret %s has a lab value", k)
			}

			before := chainLen()
			out, tmp, err := runJob(t, root, job.Commands, env)
			require.Equal(t, before+1, chainLen(), "the run appended one entry to the persistent chain; output:\n%s", labtest.Tail(string(out)))
			if c.pass {
				require.NoError(t, err, "the CI job must pass on %s; its output:\n%s", c.target, labtest.Tail(string(out)))
				if c.machine {
					assert.Contains(t, string(out), "| TestC4GenuineLiveRebuild | PASS", "the job prints the run's evidence")
				} else {
					assert.Contains(t, string(out), "| TestC5HonestD8 | PASS", "the job prints the run's evidence")
				}
				assert.Contains(t, string(out), "signed by `SHA256:", "the entry is signed with the key from the Drone secret")
			} else {
				require.Error(t, err, "the CI job must fail on %s", c.target)
				assert.Contains(t, string(out), "not in the evidence chain", "the job's output names the cause (C5)")
			}
			es, err := evidence.Chain(filepath.Join(evidenceDir, "REVIEW.jsonl"))
			require.NoError(t, err)
			if first.RunID == "" {
				first = es[len(es)-1]
			} else if c.pass {
				assert.Contains(t, es[len(es)-1].Facts["D8 live run"], "cites run "+first.RunID,
					"C5 found the first run's signed entry in the persistent chain")
			}
			left, _ := os.ReadDir(tmp)
			var names []string
			for _, e := range left {
				names = append(names, e.Name())
			}
			assert.Empty(t, names, "files the job left in its TMPDIR (the secrets directory must be removed)")
			found, err := scanner.Reader("the job's output", bytes.NewReader(out))
			require.NoError(t, err)
			assert.Empty(t, found, "secret material in the job's output")
		})
	}
}

// citingTarget serves, beside the lab's targets, a copy of the good target
// whose D8 evidence cites run e, and no other, (a commit that changes only that document,
// as the maintainers make after a run), and returns its name.
func citingTarget(t *testing.T, cfg *config.Config, e evidence.Entry) string {
	t.Helper()
	good := filepath.Dir(filepath.Dir(cfg.Target.AgeKeyFile)) // …/targets/good/keys/bootstrap-age-key.txt
	name := "cijob-" + e.RunID
	dir := filepath.Join(filepath.Dir(good), name)
	out, err := exec.Command("cp", "-a", good, dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	tg, err := fixtures.Load(dir)
	require.NoError(t, err)
	require.NoError(t, fixtures.CiteOnly(tg, "### Live rebuild, run "+e.RunID+"\n\n- the CI job's run, recorded "+e.Time+"\n"))
	return name
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o644))
}

func readJob(t *testing.T, path string) step {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var pipeline struct {
		Type  string
		Steps []step
	}
	require.NoError(t, yaml.Unmarshal(b, &pipeline), ".drone.yml")
	require.Equal(t, "exec", pipeline.Type, ".drone.yml: an exec pipeline")
	require.Len(t, pipeline.Steps, 1, ".drone.yml: one step")
	require.NotEmpty(t, pipeline.Steps[0].Commands, ".drone.yml: the step's commands")
	return pipeline.Steps[0]
}

// split separates the step's plain settings from its Drone secrets (from_secret).
func split(t *testing.T, s step) (settings map[string]string, secrets map[string]string) {
	t.Helper()
	settings, secrets = map[string]string{}, map[string]string{}
	for k, n := range s.Environment {
		var ref struct {
			FromSecret string `yaml:"from_secret"`
		}
		if n.Kind == yaml.MappingNode {
			require.NoError(t, n.Decode(&ref))
			require.NotEmpty(t, ref.FromSecret, ".drone.yml: %s is a mapping without from_secret", k)
			secrets[k] = ref.FromSecret
			continue
		}
		settings[k] = n.Value
	}
	return settings, secrets
}

// runJob runs the commands as the exec runner does: one script under
// `bash -e`, each command traced before it runs, in a fresh workspace with a
// fresh TMPDIR and only the step's environment (plus what a shell needs).
func runJob(t *testing.T, root string, commands []string, env map[string]string) (out []byte, tmp string, err error) {
	t.Helper()
	ws := workspace(t, root)
	tmp = t.TempDir()
	var script strings.Builder
	for _, c := range commands {
		fmt.Fprintf(&script, "echo %s\n%s\n", remote.ShellQuote("+ "+c), c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script.String())
	cmd.Dir = ws
	cmd.Env = []string{"TMPDIR=" + tmp, "HOME=" + os.Getenv("HOME"), "PATH=" + os.Getenv("PATH"), "DRONE=true", "CI=true"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err = cmd.CombinedOutput()
	return out, tmp, err
}

// workspace is a copy of the repository's files (tracked and untracked, not
// ignored), as the runner's clone would be, without touching this checkout.
func workspace(t *testing.T, root string) string {
	t.Helper()
	ws := t.TempDir()
	files, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	require.NoError(t, err)
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		src := filepath.Join(root, f)
		st, err := os.Lstat(src)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the work tree, or not a regular file
		}
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(ws, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(ws, f), b, st.Mode().Perm()))
	}
	return ws
}

func allSecrets(t *testing.T, cfg *config.Config) map[string]string {
	all := labtarget.TargetSecrets(t)
	all["incus-client-key"] = fileText(t, cfg.Incus.ClientKey)
	all["review-signing-key"] = fileText(t, cfg.Evidence.SigningKey)
	return all
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimRight(string(b), "\n")
}
