package incustest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
)

// The fake answers as Incus does for a VM whose agent starts late: Running
// at once, exec refused with Incus's words until the agent answers.
func TestAVMsAgentAnswersLate(t *testing.T) {
	f, err := incustest.New(t.TempDir())
	require.NoError(t, err)
	defer f.Close()
	f.Images["img"], f.AgentDelay, f.Projects["p"] = incustest.Image{}, 2, true
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: "vm", Project: "p", Type: incus.VirtualMachine, ImageAlias: "img"}))
	require.NoError(t, c.SetState(ctx, "p", "vm", "start", false))
	st, err := c.State(ctx, "p", "vm")
	require.NoError(t, err)
	assert.Equal(t, "Running", st.Status)
	_, err = c.Exec(ctx, "p", "vm", []string{"cat", "/etc/ssh/ssh_host_ed25519_key.pub"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "VM agent isn't currently running")
	res, err := c.Exec(ctx, "p", "vm", []string{"cat", "/etc/ssh/ssh_host_ed25519_key.pub"}, nil)
	require.NoError(t, err, "the agent answers after AgentDelay calls")
	assert.Contains(t, string(res.Stdout), "ssh-ed25519 ")
	res, err = c.Exec(ctx, "p", "vm", []string{"uname"}, nil)
	require.NoError(t, err)
	assert.Equal(t, 127, res.ExitCode, "what is not simulated says so")
	require.Error(t, c.DeleteInstance(ctx, "p", "vm"), "a running instance is not deleted")
	require.NoError(t, c.SetState(ctx, "p", "vm", "stop", true))
	require.NoError(t, c.DeleteInstance(ctx, "p", "vm"))
	_, err = c.Instance(ctx, "p", "vm")
	assert.ErrorIs(t, err, incus.ErrNotFound)
}
