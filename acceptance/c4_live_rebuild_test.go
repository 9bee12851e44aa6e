package acceptance

import (
	"fmt"
	"path"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/testrun"
)

// C4 — Genuine throwaway-VM live rebuild. On a blank machine created by this
// run, provisioned with only the bootstrap age key, following docs/install.md
// and nothing else, the system activates, the reconcile oneshots converge,
// every secret including the certificate decrypts, TLS is served from the
// certificate in git, and every name it serves answers with success.
func TestC4GenuineLiveRebuild(t *testing.T) {
	mc := run.Machine(t)
	view := run.Target(t)
	assertCreatedByThisRun(t, mc)

	inst := run.InstallInBand(t)
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
	units, err := probe.AwaitConverged(ctx, cl, run.Units(t), run.Config.Timeouts.ConvergeTimeout)
	t.Logf("units verdict in %.1fs after the first probe (the switch ended %.1fs before it)",
		time.Since(start).Seconds(), start.Sub(inst.Ended).Seconds())
	require.NoError(t, err, "the reconcile units converge")
	for _, u := range units {
		t.Logf("converged: %s", u)
	}
	require.NoError(t, inst.Err, "install")

	m := run.Installed(t)
	assertSecretsDecrypted(t, m, view)
	assertCertFilesFromGit(t, m, view)
	assertServesGitCert(t, m, view)

	run.Sentence(t, "the install built what it activated: none of it was in the store before", func(t *testing.T) {
		if why := run.NotCold(); why != "" {
			t.Skipf("the store before the install is not known: %s", why)
		}
		blank := run.Blank(t)
		require.NoError(t, blank.Err, "the store as provisioned")
		sys, err := probe.CurrentSystem(ctx, cl)
		require.NoError(t, err)
		require.NotEmpty(t, sys, "/run/current-system after the switch")
		closure, err := probe.Closure(ctx, cl, sys)
		require.NoError(t, err)
		assert.Empty(t, probe.AlreadyThere(closure, blank.Store, blank.Baseline),
			"paths of the activated system %s that were in the store before the install and that the image's own system does not need: "+
				"the install activated them without building or fetching them", path.Base(sys))
		run.Note("store before the install", "%d paths (the image's own system needs %d); the activated system's closure: %d paths",
			len(blank.Store), len(blank.Baseline), len(closure))
	})

	run.Sentence(t, "converged means stays converged", func(t *testing.T) {
		settled, err := probe.StillConverged(ctx, cl, units, run.Config.Timeouts.Settle)
		require.NoError(t, err, "every unit still converged, same main PID, no restart")
		assertServesGitCert(t, m, view)
		m.MarkConverged(settled) // TestC4GenuineLiveRebuildToTheEnd looks again at the end
	})

	run.Sentence(t, "it works: every name it serves answers over HTTPS with success", func(t *testing.T) {
		assertAnswers(t, m)
	})
	if !t.Failed() {
		writeLiveRecord(t, mc, view, inst, cl)
	}
}

// C4, to the end of the run: what converged stays converged while the whole
// suite runs, and comes back when its machine restarts — NixOS activates
// the boot generation at every boot, so a working cc-ci that does not
// survive a restart of its machine is not reproducible in any useful sense.
//
// It is a parallel top-level test so that go test runs it after every
// other test of the run: a parallel test is released only once the
// sequential tests have all finished (testing.runTests → tRunner). Its
// name extends TestC4GenuineLiveRebuild's, so `-run TestC4GenuineLiveRebuild`
// runs both, and the evidence judges them as one (evidence.LiveRebuildTest).
func TestC4GenuineLiveRebuildToTheEnd(t *testing.T) {
	t.Parallel()
	m := run.Installed(t)
	conv := m.Converged(t)
	view := run.Target(t)
	ctx := run.Context()

	run.Sentence(t, "converged means stays converged for the whole run", func(t *testing.T) {
		// Not before the hold: a run shorter than it still looks that late.
		wait := run.Config.Timeouts.Hold - time.Since(conv.At)
		_, err := probe.StillConverged(ctx, m.SSH, conv.Units, max(wait, 0))
		require.NoError(t, err, "at the end of the run (%s after convergence), every unit still converged, same main PID, no restart",
			time.Since(conv.At).Round(time.Second))
		assertServesGitCert(t, m, view)
	})

	run.Sentence(t, "after a restart of its machine, it converges again", func(t *testing.T) {
		start := time.Now()
		m := m.Restart(t)
		t.Logf("restarted %s through Incus; it answers again after %s", m.Name, time.Since(start).Round(time.Millisecond))
		units, err := probe.AwaitConverged(ctx, m.SSH, run.Units(t), run.Config.Timeouts.ConvergeTimeout)
		require.NoError(t, err, "after a restart, the units converge again by themselves (what the switch started must be enabled at boot)")
		for _, u := range units {
			t.Logf("converged after the restart: %s", u)
		}
		assertSecretsDecrypted(t, m, view)
		assertCertFilesFromGit(t, m, view)
		assertServesGitCert(t, m, view)
	})
}

// writeLiveRecord leaves this run's live-rebuild record under CCCI_OUT_DIR,
// for the target's maintainers to commit into the live part of their D8
// evidence (C5 then finds this run in the evidence chain by its id).
func writeLiveRecord(t *testing.T, mc *machine.Machine, view *testrun.TargetView, inst *testrun.Install, cl *remote.Client) {
	t.Helper()
	rebuilt, err := probe.CurrentSystem(run.Context(), cl)
	require.NoError(t, err)
	record := fmt.Sprintf("### Live rebuild, run %s\n\n- machine: %s/%s (%s, image %s), created %s by this run\n"+
		"- base %s, secrets %s; install manifest %s (%d steps, all exit 0)\n- rebuilt system: %s\n- recorded %s\n",
		run.ID, mc.Project, mc.Name, mc.Type, mc.Image, mc.CreatedAt.UTC().Format(time.RFC3339),
		view.Repos.BaseCommit[:12], view.Repos.SecretsCommit[:12], inst.Record.Manifest[:16], len(inst.Record.Steps),
		rebuilt, time.Now().UTC().Format(time.RFC3339))
	p, err := run.WriteLiveRecord(record)
	require.NoError(t, err)
	t.Logf("this run's live record, for the target's %s live part: %s", target.D8Doc, p)
}
