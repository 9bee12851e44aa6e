package acceptance

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// C6 — Resource fit + cleanup. The reference instance and the throwaway are
// sized 4GiB, and all running instances fit the RAM guideline. That the
// throwaway is destroyed is checked after teardown, by the run itself
// (TestMain fails the run and says "C6 cleanup" if it is still there).
func TestC6ResourceFitAndCleanup(t *testing.T) {
	mc := run.Machine(t)
	cfg := run.Config
	ctx := run.Context()

	project, name, _ := strings.Cut(cfg.Reference, "/")
	ref, err := run.Incus.Instance(ctx, project, name)
	require.NoError(t, err, "the reference instance %s", cfg.Reference)
	assert.Equal(t, config.FormatSize(cfg.ReferenceMemory), ref.ExpandedConfig["limits.memory"], "%s limits.memory", cfg.Reference)

	in, err := run.Incus.Instance(ctx, mc.Project, mc.Name)
	require.NoError(t, err)
	assert.Equal(t, config.FormatSize(cfg.Memory), in.ExpandedConfig["limits.memory"], "throwaway %s limits.memory", mc.Name)

	ram, err := machine.RAM(ctx, run.Incus, machine.GuardrailsFrom(cfg), 0)
	require.NoError(t, err)
	t.Logf("running RAM: %s", ram)
	run.Note("RAM", "%s", ram)
	assert.True(t, ram.Fits, "running instances fit the guideline: %s", ram)
}
