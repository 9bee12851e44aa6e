package acceptance

import (
	"strings"
	"testing"
	"time"

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
	// The same machine both ways: its machine id read over SSH and through
	// Incus (the host name is the image's to choose: a stock NixOS one says
	// "nixos" whatever the instance is called).
	res, err := cl.Run(ctx, "cat /etc/machine-id", 10*time.Second)
	require.NoError(t, err)
	out, err := mc.Exec(ctx, []string{"cat", "/etc/machine-id"})
	require.NoError(t, err)
	id := strings.TrimSpace(string(out.Stdout))
	require.NotEmpty(t, id, "%s has a machine id (read through Incus)", mc.Name)
	assert.Equal(t, id, strings.TrimSpace(string(res.Stdout)), "SSH reached %s, not another machine: /etc/machine-id over SSH and through Incus", mc.Name)

	blank := run.Blank(t)
	require.NoError(t, blank.Err, "probe the machine as provisioned")
	assert.Empty(t, blank.Residue, "as provisioned, before any install: no cc-ci configuration and no age key")
}
