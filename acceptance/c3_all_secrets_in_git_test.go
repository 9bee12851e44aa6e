package acceptance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/sopsfile"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C3 — All secrets in git (one exception). Every infra/app secret is
// sops-encrypted in git; the only out-of-band secret is the bootstrap age
// key; no plaintext secret is in the repos or the Nix store.
func TestC3AllSecretsInGitOneException(t *testing.T) {
	view := run.Target(t)
	cfg := run.Config
	ctx := run.Context()

	t.Run("every required secret is in git, encrypted", func(t *testing.T) {
		for _, name := range cfg.RequiredSecrets {
			assert.NotEmpty(t, view.Secrets[name], "secret %s is in %s (decrypted with the bootstrap key)", name, target.SecretsDoc)
		}
		enc, err := target.ReadSecretsFile(view.Repos)
		require.NoError(t, err)
		info, err := sopsfile.Inspect(enc)
		require.NoError(t, err)
		assert.Empty(t, info.Plaintext(), "no value of %s is plaintext", target.SecretsDoc)
	})

	t.Run("the age key is the only thing the operator provides", func(t *testing.T) {
		var operatorSteps []string
		for _, b := range view.Doc.Blocks {
			if b.Runs == installdoc.Operator {
				operatorSteps = append(operatorSteps, b.Step)
			}
		}
		assert.Equal(t, []string{"provision-age-key"}, operatorSteps, "operator (out-of-band) steps in %s", view.Doc.Path)
	})

	t.Run("the install pushed exactly one file: the age key", func(t *testing.T) {
		inst := run.Installed(t)
		require.NotNil(t, inst.Record, "install record")
		require.Len(t, inst.Record.Pushed, 1, "files the harness pushed to the machine out of band: %v", inst.Record.Pushed)
		p := inst.Record.Pushed[0]
		assert.Equal(t, cfg.AgeKeyPath, p.Path, "the documented path of the age key")
		assert.Equal(t, target.SHA256(view.Key.File), p.Fingerprint, "the pushed file is the bootstrap key")
		require.NoError(t, inst.Err, "with only the age key, the install succeeds (the secrets repo credential came from git)")
	})

	t.Run("every file in /run/secrets is a declared secret", func(t *testing.T) {
		mc := run.Machine(t)
		require.NoError(t, run.Installed(t).Err, "install")
		cl, err := mc.SSH(ctx)
		require.NoError(t, err)
		defer cl.Close()
		assertSecretsDecrypted(t, cl, view)
	})

	t.Run("no plaintext secret in the repos' history", func(t *testing.T) {
		needles := leakscan.Needles(view.Secrets)
		total := 0
		for _, repo := range []string{view.Repos.Base, view.Repos.Secrets} {
			found, err := leakscan.GitObjects(ctx, repo, needles)
			require.NoError(t, err)
			total += len(found)
			assert.Empty(t, findings(found), "plaintext secrets in the objects of %s", repo)
		}
		run.Note("leak scan: repos", "%d needles over every object of both repos: %d findings", len(needles), total)
	})

	t.Run("no plaintext secret in the machine's Nix store", func(t *testing.T) {
		mc := run.Machine(t)
		require.NoError(t, run.Installed(t).Err, "install")
		cl, err := mc.SSH(ctx)
		require.NoError(t, err)
		defer cl.Close()
		needles := leakscan.Needles(view.Secrets)
		found, err := leakscan.Remote(ctx, cl, cfg.ScanPaths, needles)
		require.NoError(t, err)
		run.Note("leak scan: machine", "%d needles over %v: %d findings", len(needles), cfg.ScanPaths, len(found))
		assert.Empty(t, findings(found), "plaintext secrets under %v on %s", cfg.ScanPaths, mc.Name)
	})
}

func findings(fs []leakscan.Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return out
}
