package acceptance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The machine the install starts from is brand new and blank: created by this
// run in the configured project with the configured memory, reachable over SSH
// with the host key pinned out of band, and carrying no cc-ci configuration and
// no age key.
func TestMachineIsBrandNewAndBlank(t *testing.T) {
	mc := run.Machine(t)
	ctx := run.Context()
	if why := run.NotCold(); why != "" {
		t.Skipf("%s; as kept, it holds: %v", why, run.Blank(t).Residue)
	}

	assertCreatedByThisRun(t, mc)

	cl, err := mc.SSH(ctx)
	require.NoError(t, err, "SSH with the pinned host key")
	defer cl.Close()
	assert.NoError(t, mc.ReachedBySSH(ctx, cl), "the same machine both ways")

	blank := run.Blank(t)
	require.NoError(t, blank.Err, "probe the machine as provisioned")
	assert.Empty(t, blank.Residue, "as provisioned, before any install: no cc-ci configuration and no age key")
}
