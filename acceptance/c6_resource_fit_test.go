package acceptance

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C6 — Resource fit + cleanup. The reference instance and the throwaway are
// sized 4 GB (compared as bytes: docs/decisions.md says which values count),
// and all running instances fit the RAM guideline. That the
// throwaway is destroyed is checked after teardown, by the run itself
// (TestMain fails the run and says "C6 cleanup" if it is still there).
func TestC6ResourceFitAndCleanup(t *testing.T) {
	run.Require(t)
	cfg := run.Config
	ctx := run.Context()

	project, name, _ := strings.Cut(cfg.Expect.Reference, "/")
	ref, err := run.Incus.Instance(ctx, project, name)
	require.NoError(t, err, "the reference instance %s", cfg.Expect.Reference)
	assertMemory(t, cfg.Expect.Reference, ref.ExpandedConfig["limits.memory"], cfg.Expect.ReferenceMemory...)

	run.Sentence(t, "DECISIONS.md records the final sizing of the reference, as applied", func(t *testing.T) {
		d, err := target.ReadDecisions(run.Repos(t))
		require.NoError(t, err)
		sizes := d.Sizing(name)
		if !judge.None(t, judge.Sizing(sizes, name), judge.SizingUnrecorded) {
			return
		}
		assertMemory(t, cfg.Expect.Reference+" (as "+target.DecisionsDoc+" records it)", ref.ExpandedConfig["limits.memory"], sizes...)
	})

	// The reference and what DECISIONS.md records of it are judged
	// above without the throwaway; its own size and the room it takes, here.
	mc := run.Machine(t)
	in, err := run.Incus.Instance(ctx, mc.Project, mc.Name)
	require.NoError(t, err)
	assertMemory(t, "throwaway "+mc.Project+"/"+mc.Name, in.ExpandedConfig["limits.memory"], cfg.Machine.Memory)

	ram, err := machine.RAM(ctx, run.Incus, cfg.Guardrails, 0)
	require.NoError(t, err)
	t.Logf("running RAM: %s", ram)
	run.Note("RAM", "%s", ram)
	assert.True(t, ram.Fits, "running instances fit the guideline: %s", ram)
}
