package targetlint

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/target"
)

// lint fetches a generated target as a run would (file:// URLs) and lints it.
func lint(t *testing.T, tg *fixtures.Target) []Problem {
	t.Helper()
	cfg, err := config.LoadFrom(func(string) (string, bool) { return "", false }) // the defaults
	require.NoError(t, err)
	cfg.BaseRepoURL, cfg.SecretsRepoURL = "file://"+tg.BaseRepo(), "file://"+tg.SecretsRepo()
	cfg.RequiredSecrets = []string{"drone_rpc_secret", "registry_password"}
	cfg.CertMinDays, cfg.ForbiddenPhrases, cfg.StalePhrases = 14, []string{"infeasible by design"}, []string{"operator drops", "drops the cert"}
	var r redact.Redactor
	key, err := target.LoadAgeKey(tg.BootstrapKeyFile(), &r)
	require.NoError(t, err)
	rp, err := target.Fetch(context.Background(), t.TempDir(), cfg.TargetSettings, key, &r)
	require.NoError(t, err)
	secrets, serr := target.Secrets(rp, key, &r)
	return Check(context.Background(), Target{Repos: rp, Secrets: secrets, SecretsErr: serr, Key: key}, cfg,
		map[string]string{"BASE_REPO_URL": "b", "SECRETS_REPO_URL": "s", "DOMAIN": "ci.lab.test", "GATEWAY": "10.99.0.1", "MACHINE": "m"})
}

// The good target has no problem; each repo-level defect has one naming
// its cause — found with no machine and no Incus.
func TestEveryRepoLevelDefectIsFoundWithoutAMachine(t *testing.T) {
	for _, tool := range []string{"git", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Unavailable(t, tool+" not installed (make lab-up installs it)")
		}
	}
	good, err := fixtures.Generate(fixtures.Options{Dir: filepath.Join(t.TempDir(), "good"), Domain: "ci.lab.test", Gateway: "10.99.0.1",
		SecretsInputURL: "git+file:///root/cc-ci-secrets", Now: time.Now()})
	require.NoError(t, err)
	assert.Empty(t, lint(t, good), "the good target")

	for name, want := range map[string]string{
		"decisions-missing":            "records no linkage of the secrets repo",
		"decision-contradicts-linkage": "records the linkage as [git submodule], but the base pins the secrets repo as a flake input",
		"d8-no-live-part":              "has no live part",
		"d8-no-static-part":            "has no static part",
		"d8-still-infeasible":          `says "infeasible by design"`,
		"d8-infeasible-disguised":      `says "infeasible by design"`,
		"stale-docs":                   "still describes the operator-dropped certificate",
		"install-hides-a-step":         "shell block without a tag",
		"operator-block-copies-more":   "is not the age key's push",
		"second-out-of-band-secret":    `operator step "provision-registry-token"`,
		"cert-dropped-by-hand":         "drop-cert",
		"cert-for-another-domain":      "do not cover *.ci.lab.test",
		"flake-lock-stale":             "the secrets repo is at",
		"secrets-repo-has-code":        "decrypt.sh",
		"recipients-mismatch":          "not to the recipients .sops.yaml names",
		"plaintext-in-secrets-file":    "values not encrypted: registry_mirror_token",
		"plaintext-in-sops-metadata":   "values not encrypted: sops.registry_password_backup",
		"plaintext-in-base":            "drone_rpc_secret (raw) in git object",
		"secret-in-a-pull-request-ref": "drone_rpc_secret (raw) in git object",
		"secret-missing":               "no secret registry_password",
		"secret-too-short":             "too short to be proven absent: registry_username is 4 bytes",
		"secrets-mac-tampered":         "MAC mismatch",
	} {
		t.Run(name, func(t *testing.T) {
			tg, err := fixtures.GenerateDefect(good, name, filepath.Join(t.TempDir(), name))
			require.NoError(t, err)
			var all []string
			for _, p := range lint(t, tg) {
				all = append(all, p.String())
			}
			assert.Contains(t, strings.Join(all, "\n"), want, "the problems of %s", name)
		})
	}
}
