package acceptance

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C1 — Secrets-repo split. A separate private secrets repo holds only the
// sops-encrypted secrets (+ .sops.yaml), consumed by the base via a flake
// input (or, the plan's alternative, a git submodule); instance parameters
// stay in the base as plain values; and the system
// built from base+secrets is byte-identical to the running system.
func TestC1SecretsRepoSplit(t *testing.T) {
	view := run.Target(t)
	ctx := run.Context()
	cfg := run.Config

	run.Sentence(t, "secrets repo holds only sops files, in every commit", func(t *testing.T) {
		found, err := target.SecretsTreeProblems(ctx, view.Repos)
		require.NoError(t, err)
		judge.None(t, judge.SecretsRepoTree(found), judge.SecretsTree)
	})

	run.Sentence(t, "the secrets repo is private: an anonymous read is refused", func(t *testing.T) {
		refused, answer, err := target.AnonymousRead(ctx, target.AnonymousOf(cfg.Target))
		require.NoError(t, err)
		assert.True(t, refused, "%s must refuse a client without credentials; the server answered: %s", cfg.Target.SecretsRepoURL, answer)
		run.Note("secrets repo private", "anonymous read of %s refused: %s", cfg.Target.SecretsRepoURL, firstLine(answer))
	})

	run.Sentence(t, "recipients match .sops.yaml and the base's parameters", func(t *testing.T) {
		fromRules, err := target.SopsRecipients(view.Repos)
		require.NoError(t, err)
		inFile, err := target.FileRecipients(view.Repos, target.SecretsDoc)
		require.NoError(t, err)
		judge.None(t, judge.Recipients(fromRules, inFile, view.Key.Recipient), judge.RecipientsMismatch, judge.BootstrapNotRecipient)
		// Parameters of the base: set in plain text in a committed file of
		// it, whichever (a sops file's metadata lists recipients too, and
		// does not count).
		params := map[string]string{"the domain": cfg.Target.Domain, "the gateway": cfg.Target.Gateway}
		for _, r := range inFile {
			params["recipient "+r] = r
		}
		for what, v := range params {
			if v == "" {
				continue
			}
			files, err := target.PlainIn(view.Repos, v)
			require.NoError(t, err)
			if assert.NotEmpty(t, files, "%s (%s) is a plain parameter of the base: set in one of its committed files", what, v) {
				run.Note("parameter: "+what, "%s in %v", v, files)
			}
		}
	})

	// Plan §2: another admin repoints cc-ci by editing the parameters, "a
	// one-line edit, not a fork".
	run.Sentence(t, "each parameter is set once in the base", func(t *testing.T) {
		for _, p := range run.Parameters() {
			judge.None(t, judge.ParameterSiting(p, run.ParameterSites(t, p)), judge.ParameterSites)
		}
	})

	run.Sentence(t, "one edit repoints it: rebuilt with fresh parameters, the system holds the new values where it held the old, and the old nowhere", func(t *testing.T) {
		judge.None(t, judge.Repointing(run.Installed(t).Repointed(t)), judge.ParameterLiteral, judge.ParameterLost)
	})

	run.Sentence(t, "the base pins the secrets repo (a flake input or a git submodule)", func(t *testing.T) {
		links, err := target.SecretsLinks(view.Repos, cfg.Target.SecretsRepoURL)
		require.NoError(t, err)
		judge.None(t, judge.Pins(links, cfg.Target.SecretsRepoURL, view.Repos.SecretsCommit),
			judge.SecretsUnpinned, judge.SecretsPinStale, judge.SecretsPinNoNarHash)
		run.Note("secrets linkage", "%v", links)
	})

	run.Sentence(t, "DECISIONS.md records the linkage the base uses", func(t *testing.T) {
		links, err := target.SecretsLinks(view.Repos, cfg.Target.SecretsRepoURL)
		require.NoError(t, err)
		d, err := target.ReadDecisions(view.Repos)
		require.NoError(t, err)
		judge.None(t, judge.Linkage(d.Linkage(), links), judge.LinkageUnrecorded, judge.LinkageContradicted)
	})

	run.Sentence(t, "the rebuilt system is byte-identical to the running one", func(t *testing.T) {
		m := run.Installed(t)
		rebuilt, err := probe.CurrentSystem(ctx, m.SSH)
		require.NoError(t, err)
		project, name, _ := strings.Cut(cfg.Expect.Reference, "/")
		running, err := probe.CurrentSystemVia(ctx, run.Incus, project, name)
		require.NoError(t, err, "read the running reference system %s", cfg.Expect.Reference)
		require.NotEmpty(t, rebuilt, "the throwaway machine has a /run/current-system")
		assert.Equal(t, running, rebuilt, "store path of the rebuilt system vs the running reference %s", cfg.Expect.Reference)
		t.Logf("running %s = rebuilt %s: %s", cfg.Expect.Reference, m.Name, rebuilt)
	})
}

func firstLine(s string) string { first, _, _ := strings.Cut(s, "\n"); return first }
