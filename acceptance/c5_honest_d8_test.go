package acceptance

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C5 — Honest D8. The D8 evidence, as committed in the base repo, has a
// static part (byte-identical closure) and a live part (the throwaway
// rebuild); the "infeasible by design" wording is gone. The harness judges
// only what the target committed; this run's own live record goes under
// CCCI_OUT_DIR for the reviewer to commit, never into the target's clone.
func TestC5HonestD8(t *testing.T) {
	view := run.Target(t)
	doc, err := target.ReadBase(view.Repos, target.D8Doc)
	require.NoError(t, err, "the base has %s", target.D8Doc)
	static, live := target.D8Parts(doc)

	assert.True(t, target.ContainsPhrase(static, "byte-identical"),
		"%s has a static part (a \"## Static\" section) that states the byte-identical closure", target.D8Doc)
	assert.NotEmpty(t, live, "%s has a live part (a \"## Live\" section)", target.D8Doc)
	for _, phrase := range run.Config.ForbiddenPhrases {
		assert.False(t, target.ContainsPhrase(doc, phrase), "%s must not say %q", target.D8Doc, phrase)
	}

	mc, cl := installedMachine(t) // the live rebuild this run performed
	inst := run.Installed(t)
	rebuilt, err := probe.CurrentSystem(run.Context(), cl)
	require.NoError(t, err)
	record := fmt.Sprintf("### Live rebuild, run %s\n\n- machine: %s/%s (%s, image %s), created %s by this run\n"+
		"- base %s, secrets %s; install manifest %s (%d steps, all exit 0)\n- rebuilt system: %s\n- recorded %s\n",
		run.ID, mc.Project, mc.Name, mc.Type, mc.Image, mc.CreatedAt.UTC().Format(time.RFC3339),
		view.Repos.BaseCommit[:12], view.Repos.SecretsCommit[:12], inst.Record.Manifest[:16], len(inst.Record.Steps),
		rebuilt, time.Now().UTC().Format(time.RFC3339))
	p, err := run.WriteLiveRecord(record)
	require.NoError(t, err)
	t.Logf("this run's live record, for the reviewer to commit under %s's live part: %s", target.D8Doc, p)
}
