package testrun_test

// The run's lifecycle against the Incus fake (incustest), with no lab: the
// suite is the real one, a child process that speaks Incus's API to the
// fake's socket and SSH to its guest, which answers as a blank machine does
// (Server.Guest scripts more). What needs no real install runs here, in
// make unit; one SIGINT and one kill -9 test stay on the lab (faults_test.go,
// selftest_test.go).

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// fakeLab is the Incus fake a suite runs against, its client, the
// configuration the suite will load (project, image, guardrails) and the
// environment that points a suite there: no settings file, no target.
func fakeLab(t *testing.T) (*incustest.Server, *incus.Client, *config.Config, []string) {
	t.Helper()
	f, err := incustest.New(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(f.Close)
	f.Images["blank"] = incustest.Image{Type: "container"}
	f.Projects["ci"] = true
	f.Guest = blankNixOS
	env := []string{"CCCI_CONFIG=", "CCCI_INCUS_URL=", "CCCI_INCUS_SOCKET=" + f.Socket, "CCCI_PROJECT=ci", "CCCI_ALLOWED_PROJECTS=ci",
		"CCCI_IMAGE=blank", "CCCI_INSTANCE_TYPE=container", "CCCI_REFERENCE=ci/reference", "CCCI_SSH_PORT=" + strconv.Itoa(f.SSHPort()), "CCCI_MEMORY=1GiB",
		"CCCI_BASE_REPO_URL=", "CCCI_SECRETS_REPO_URL=", "CCCI_AGE_KEY_FILE=", "CCCI_EGRESS=off", "CCCI_SIGNING_KEY=", "CCCI_FETCH_LOG="}
	cfg, err := config.LoadFrom(func(k string) (string, bool) {
		for _, kv := range env {
			if key, v, _ := strings.Cut(kv, "="); key == k {
				return v, true
			}
		}
		return "", false
	})
	require.NoError(t, err, "the fake's configuration")
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	return f, c, cfg, env
}

// The suite runs its blank-machine test on the fake and passes: a machine
// is created there, reached over SSH with its pinned host key, found blank,
// and destroyed; its evidence names it.
func TestTheSuiteRunsOnTheFake(t *testing.T) {
	f, c, cfg, env := fakeLab(t)
	ch := startSuite(t, env, "-test.run", "TestMachineIsBrandNewAndBlank")
	require.Equal(t, 0, ch.wait(t), "the suite on the fake; output:\n%s", ch.out)
	assert.Contains(t, ch.out.String(), "--- PASS: TestMachineIsBrandNewAndBlank")
	es := ch.evidence(t)
	require.Len(t, es, 1)
	assert.NotEmpty(t, es[0].Machine, "the run created its machine on the fake")
	assert.Empty(t, labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix), "and destroyed it")
	assert.Contains(t, f.Requests(), "POST /1.0/instances")
}

// blankNixOS answers the probes of a blank NixOS machine: the system it
// booted, its closure, and a store holding that and nothing else.
func blankNixOS(_, command string) (stdout, stderr string, code int, ok bool) {
	const sys = "/nix/store/0c8ah1x3kqzsb4l7zsl7g4xq9v1vz0dd-nixos-system-blank-25.05"
	closure := []string{sys, "/nix/store/9xk1w4v0mmw0lqdb3lw6iz1v2m5m3f0p-glibc-2.40", "/nix/store/2ab6c9sqglvsr2i1x6qhdq5ix3w4zdyy-systemd-257"}
	switch command {
	case "readlink -f /run/current-system || true":
		return sys + "\n", "", 0, true
	case "[ -d /nix/store ] && ls -1A /nix/store || true":
		var names []string
		for _, p := range closure {
			names = append(names, strings.TrimPrefix(p, "/nix/store/"))
		}
		return strings.Join(names, "\n") + "\n", "", 0, true
	case "nix-store --query --requisites -- " + remote.ShellQuote(sys):
		return strings.Join(closure, "\n") + "\n", "", 0, true
	}
	return "", "", 0, false
}

// heldAtSSH makes the fake's guests hold the run's first SSH command (the
// boot stage's "true") until the test ends: the run stays mid-provision.
func heldAtSSH(t *testing.T, f *incustest.Server) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.Guest = func(name, command string) (string, string, int, bool) {
		if command == "true" {
			<-release
		}
		return blankNixOS(name, command)
	}
}

// A Ctrl-C (SIGINT) or SIGTERM while the machine is being provisioned: the
// run exits non-zero and leaves no instance.
func TestInterruptMidProvisionLeavesNothing(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			f, c, cfg, env := fakeLab(t)
			heldAtSSH(t, f)
			ch := startSuite(t, env, "-test.run", "TestMachineIsBrandNewAndBlank")
			name := awaitNewInstance(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix, nil)
			require.NoError(t, ch.cmd.Process.Signal(sig))
			code := ch.wait(t)
			assert.NotEqual(t, 0, code, "an interrupted run must not pass")
			assert.Contains(t, ch.out.String(), "tearing down before exit")
			assertGone(t, c, cfg.Machine.Project, name)
			es := ch.evidence(t)
			if assert.Len(t, es, 1, "the interrupted run still wrote its evidence") {
				assert.Equal(t, "fail", es[0].Outcome)
				assert.Equal(t, "interrupted by "+sig.String(), es[0].Interrupted)
			}
		})
	}
}

// kill -9 leaves the test process no chance to clean up: its guardian does.
// (TestOrphanOfAKilledRunIsReapedByTheNext kills both, on the lab.)
func TestKilledRunIsCleanedByItsGuardian(t *testing.T) {
	f, c, cfg, env := fakeLab(t)
	heldAtSSH(t, f)
	ch := startSuite(t, env, "-test.run", "TestMachineIsBrandNewAndBlank")
	name := awaitNewInstance(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix, nil)
	require.NoError(t, ch.cmd.Process.Kill())
	ch.wait(t)
	assert.Contains(t, ch.out.String(), "ended without teardown: destroying")
	assertGone(t, c, cfg.Machine.Project, name)
	es := ch.evidence(t)
	if assert.Len(t, es, 1, "the guardian wrote the dead run's evidence") {
		assert.Contains(t, es[0].Interrupted, "died before its teardown")
		assert.Contains(t, es[0].Destroy, "destroyed by the guardian")
	}
}

// A state file is input: one that names an instance the harness did not
// create — unlabelled, in another project, or labelled by another run — is
// refused before anything touches it. The instance is asked of the API
// afterwards: same uuid, same status.
func TestStateFileNamingAnotherInstanceIsRefused(t *testing.T) {
	f, c, cfg, env := fakeLab(t)
	ctx := context.Background()
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	started := func(project, name string, labels map[string]string) string {
		require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: name, Project: project, Type: incus.Container, ImageAlias: cfg.Machine.Image, Config: labels}))
		require.NoError(t, c.SetState(ctx, project, name, "start", false))
		return name
	}
	f.Projects["lichen"] = true
	unlabelled := started(cfg.Machine.Project, "decoy-state", nil)
	otherRun := started(cfg.Machine.Project, "ccci-r-another-run", map[string]string{l.CreatedBy(): machine.CreatedBy, l.RunID(): "r-another-run",
		l.ExpiresAt(): time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	elsewhere := started("lichen", "lichen-staging", nil)

	rows := []struct {
		name          string
		project, inst string
		runID, uuid   string // uuid "": the instance's real one
		want          string
	}{
		{"unlabelled instance in the allowed project", cfg.Machine.Project, unlabelled, "r-whatever", "", "does not carry the label " + l.CreatedBy()},
		{"instance in another project", "lichen", elsewhere, "r-whatever", "", "not in the allow-list"},
		{"another run's machine, a wrong run id", cfg.Machine.Project, otherRun, "r-mine", "", `"r-another-run" is not run r-mine`},
		{"another run's machine, a wrong uuid", cfg.Machine.Project, otherRun, "r-another-run", "00000000-0000-4000-8000-000000000000",
			"a different instance under the same name"},
		{"another run's machine, all labels right", cfg.Machine.Project, otherRun, "r-another-run", "", "is not the one the state file pinned"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			before, err := c.Instance(ctx, row.project, row.inst)
			require.NoError(t, err)
			stateFile := forgedState(t, c, row.project, row.inst, row.runID, row.uuid)
			ch := startSuite(t, append(slices.Clone(env), "SKIP_provision=1", "CCCI_STATE_FILE="+stateFile), "-test.run", "TestMachineIsBrandNewAndBlank")
			assert.NotEqual(t, 0, ch.wait(t))
			out := ch.out.String()
			assert.Contains(t, out, "cannot be reused")
			assert.Contains(t, out, row.want)
			assert.NotContains(t, out, "destroyed "+row.project+"/"+row.inst)
			assert.Contains(t, out, "(0 created, 0 reused)", "nothing counted as this run's")
			after, err := c.Instance(ctx, row.project, row.inst)
			if assert.NoError(t, err, "%s/%s must survive", row.project, row.inst) {
				assert.Equal(t, before.Config[machine.UUIDKey], after.Config[machine.UUIDKey], "same instance (uuid)")
				assert.Equal(t, before.Status, after.Status, "left as it was")
			}
		})
	}
}
