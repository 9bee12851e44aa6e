package acceptance

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/probe"
)

// C4 — Genuine throwaway-VM live rebuild. On a blank machine created by this
// run, provisioned with only the bootstrap age key, following docs/install.md
// and nothing else, the system activates, the reconcile oneshots converge,
// every secret including the certificate decrypts, and TLS is served from the
// certificate in git.
func TestC4GenuineLiveRebuild(t *testing.T) {
	mc := run.Machine(t)
	view := run.Target(t)
	assertCreatedByThisRun(t, mc)

	inst := run.Installed(t)
	assert.NoError(t, inst.Err, "install.md, followed exactly, must succeed")
	require.NotNil(t, inst.Record, "install record")
	if !assert.True(t, inst.Record.Ran(view.Doc), "exactly the blocks of %s ran, in order, to the end (manifest %s)",
		view.Doc.Path, view.Doc.Manifest) {
		return // the switch never ran: there is nothing on the machine to judge
	}

	ctx := run.Context()
	cl, err := mc.SSH(ctx)
	require.NoError(t, err)
	defer cl.Close()

	// Read even when the switch failed: the unit states say why. The wait
	// ends as soon as systemd's state decides; the timeout is the backstop.
	start := time.Now()
	units, err := probe.AwaitConverged(ctx, cl, run.Config.Units, run.Config.ConvergeTimeout)
	t.Logf("units verdict in %.1fs after the first probe (the switch ended %.1fs before it)",
		time.Since(start).Seconds(), start.Sub(inst.Ended).Seconds())
	require.NoError(t, err, "the reconcile units converge")
	for _, u := range units {
		t.Logf("converged: %s", u)
	}
	require.NoError(t, inst.Err, "install")

	assertSecretsDecrypted(t, cl, view)
	assertCertFilesFromGit(t, cl, view)
	assertServesGitCert(t, mc.IP, view)

	run.Sentence(t, "converged means stays converged", func(t *testing.T) {
		_, err := probe.StillConverged(ctx, cl, units, run.Config.Settle)
		require.NoError(t, err, "every unit still converged, same main PID, no restart")
		assertServesGitCert(t, mc.IP, view)
	})
}
