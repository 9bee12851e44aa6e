package machine_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/remote"
)

func newManager(t *testing.T) (*machine.Manager, *config.Config) {
	c, cfg := labtest.Client(t, "https")
	return &machine.Manager{Client: c, Guard: cfg.Guardrails, Labels: machine.Labels{Prefix: cfg.Guardrails.LabelPrefix},
		RunID: machine.NewRunID(time.Now()), Log: t.Logf}, cfg
}

func smallSpec(cfg *config.Config) machine.Spec {
	s := machine.SpecFrom(cfg)
	s.Memory = 512 << 20
	return s
}

// The whole life of a throwaway machine: created with labels and limits,
// reachable over SSH with the pinned key, shell state kept across blocks,
// destroyed and proven gone.
func TestCreateReachDestroy(t *testing.T) {
	m, cfg := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = m.DestroyAll(context.Background()) })

	start := time.Now()
	mc, err := m.Create(ctx, smallSpec(cfg))
	require.NoError(t, err)
	t.Logf("create → SSH ready: %s", time.Since(start).Round(time.Millisecond))

	in, err := m.Client.Instance(ctx, mc.Project, mc.Name)
	require.NoError(t, err)
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	assert.Equal(t, m.RunID, in.Config[l.RunID()])
	assert.Equal(t, machine.CreatedBy, in.Config[l.CreatedBy()])
	exp, err := time.Parse(time.RFC3339, in.Config[l.ExpiresAt()])
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(cfg.Guardrails.TTL), exp, time.Minute)
	assert.Equal(t, "512MiB", in.Config["limits.memory"])
	assert.True(t, strings.HasPrefix(mc.Name, "ccci-"+m.RunID))

	cl, err := mc.SSH(ctx)
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, mc.ReachedBySSH(ctx, cl))

	_, err = cl.Run(ctx, "false", 10*time.Second)
	var ce *remote.CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 1, ce.ExitCode)

	_, err = cl.Run(ctx, "sleep 30", 500*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// A persistent shell: state carries over, pipefail and errexit hold, stdin is not swallowed.
	sh, err := cl.Shell(ctx)
	require.NoError(t, err)
	_, err = sh.Exec(ctx, "cd /tmp\nexport GREETING=hi\ncat", 10*time.Second)
	require.NoError(t, err)
	res, err := sh.Exec(ctx, `echo "$PWD $GREETING"`, 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "/tmp hi", strings.TrimSpace(string(res.Stdout)))
	res, err = sh.Exec(ctx, "false | true\necho not reached", 10*time.Second)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 1, res.ExitCode, "pipefail: the failing stage decides")
	assert.NotContains(t, string(res.Stdout), "not reached", "errexit: the block stops at the failure")
	_, err = sh.Exec(ctx, "true", 10*time.Second)
	require.ErrorIs(t, err, remote.ErrShellEnded)

	start = time.Now()
	require.NoError(t, mc.Destroy(ctx))
	t.Logf("destroy: %s", time.Since(start).Round(time.Millisecond))
	_, err = m.Client.Instance(ctx, mc.Project, mc.Name)
	require.ErrorIs(t, err, incus.ErrNotFound)
}

// A host key other than the pinned one is refused: no trust on first use.
func TestSwappedHostKeyIsRefused(t *testing.T) {
	m, cfg := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = m.DestroyAll(context.Background()) })
	mc, err := m.Create(ctx, smallSpec(cfg))
	require.NoError(t, err)

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	impostor, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	mc.HostKey = impostor
	_, err = mc.SSH(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "host key mismatch")
}
