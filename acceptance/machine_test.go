package acceptance

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
)

// The machine the install starts from is brand new and blank: created by this
// run in the configured project with the configured memory, reachable over SSH
// with the host key pinned out of band, and carrying no cc-ci configuration and
// no age key.
func TestMachineIsBrandNewAndBlank(t *testing.T) {
	mc := run.Machine(t)
	ctx := run.Context()
	cfg := run.Config

	in, err := run.Incus.Instance(ctx, mc.Project, mc.Name)
	require.NoError(t, err, "the machine must exist in Incus")
	labels := machine.Labels{Prefix: cfg.LabelPrefix}
	assert.Equal(t, run.ID, in.Config[labels.RunID()], "created by this run (run-id label)")
	assert.False(t, in.CreatedAt.Before(run.Started.Truncate(time.Second)),
		"created at %s, after this run started at %s", in.CreatedAt, run.Started)
	assert.Equal(t, cfg.Project, in.Project, "project")
	assert.Equal(t, cfg.InstanceType, in.Type, "instance type")
	assert.Equal(t, config.FormatSize(cfg.Memory), in.Config["limits.memory"], "limits.memory")

	cl, err := mc.SSH(ctx)
	require.NoError(t, err, "SSH with the pinned host key")
	defer cl.Close()
	res, err := cl.Run(ctx, "hostname", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, mc.Name, strings.TrimSpace(string(res.Stdout)), "SSH reached this machine, not another")

	residue, err := probe.Residue(ctx, cl, append(cfg.BlankAbsent, cfg.AgeKeyPath), "cc-ci-*",
		[]string{"/root", "/etc", "/var/lib", "/srv", "/home", "/tmp"})
	require.NoError(t, err)
	assert.Empty(t, residue, "a blank machine has no cc-ci configuration and no age key")
}
