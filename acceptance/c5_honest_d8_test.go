package acceptance

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C5 — Honest D8. The D8 evidence has a static part (byte-identical closure)
// and a live part recording THIS run's throwaway rebuild; the "infeasible by
// design" wording is gone.
func TestC5HonestD8(t *testing.T) {
	view := run.Target(t)
	mc, cl := installedMachine(t) // the live rebuild this evidence records
	inst := run.Installed(t)
	rebuilt, err := probe.CurrentSystem(run.Context(), cl)
	require.NoError(t, err)

	entry := fmt.Sprintf("### Live rebuild, run %s\n\n- machine: %s/%s (%s, image %s), created %s by this run\n"+
		"- base %s, secrets %s; install manifest %s (%d steps, all exit 0)\n- rebuilt system: %s\n- recorded %s\n",
		run.ID, mc.Project, mc.Name, mc.Type, mc.Image, mc.CreatedAt.UTC().Format(time.RFC3339),
		view.Repos.BaseCommit[:12], view.Repos.SecretsCommit[:12], inst.Record.Manifest[:16], len(inst.Record.Steps),
		rebuilt, time.Now().UTC().Format(time.RFC3339))
	doc, err := target.AppendD8Live(view.Repos, entry)
	require.NoError(t, err, "write the live evidence into %s", target.D8Doc)

	static, live, ok := strings.Cut(doc, "## Live")
	require.True(t, ok, "%s has a live part (## Live …)", target.D8Doc)
	assert.Contains(t, strings.ToLower(static), "byte-identical", "%s has a static part: the byte-identical closure", target.D8Doc)
	assert.Contains(t, live, run.ID, "the live part names this run")
	assert.Contains(t, live, mc.Name, "the live part names this run's machine")
	for _, phrase := range run.Config.ForbiddenPhrases {
		assert.NotContains(t, strings.ToLower(doc), strings.ToLower(phrase), "%s must not say %q", target.D8Doc, phrase)
	}
}
