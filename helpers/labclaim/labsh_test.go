package labclaim_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labclaim"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// labBin is where every labSh call's lab.sh builds its Go tool: one
// directory for the test binary, so go build links it once (an up-to-date
// binary is not linked again), not once a call.
var labBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ccci-labsh-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	labBin = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// labSh runs the real lab/lab.sh against the Incus on socket (a fake's, or
// the lab's), with its own state directory (so it can stop no daemon of the
// real lab) and a file on stdin.
func labSh(t *testing.T, socket, verb string, env ...string) (string, error) {
	t.Helper()
	canRunLabSh(t)
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "..", "..", "lab", "lab.sh")
	stdin, err := os.Open(here) // anything but a terminal: lab.sh must not read it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	state := t.TempDir()
	cmd := exec.Command("bash", script, verb)
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), "INCUS_SOCKET="+socket, "LAB_STATE="+state, "LAB_CACHE="+filepath.Join(state, "cache"),
		"LAB_BIN="+labBin, "INCUS_CONF="+filepath.Join(state, "incus-conf"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func canRunLabSh(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("incus"); err != nil || os.Geteuid() != 0 {
		labtest.Unavailable(t, "lab.sh needs root and the incus CLI (make lab-up installs it)")
	}
}

// `lab.sh up` pointed at a real host's Incus (the production reference by
// name, another address, other projects) refuses before changing anything.
func TestLabUpRefusesAnIncusThatIsNotTheLabs(t *testing.T) {
	f := aRealHost(t)
	out, err := labSh(t, f.Socket, "up")
	assert.Error(t, err, "lab up must fail; output:\n%s", out)
	assert.Contains(t, out, "is not the lab's")
	assert.Contains(t, out, "instance terraform-ci/cc-nix-test")
	assert.Contains(t, out, "nothing was changed")
	assert.Empty(t, f.changes(), "lab up sent no change to this Incus (address, pools, projects, instances untouched)")
	assert.Equal(t, "[::]:8443", f.config["core.https_address"], "address not rebound")
}

// `lab.sh down` on it deletes and stops nothing — not even the egress table
// of a harness run on this host (it once swept them all, first thing, and
// broke a run in progress).
func TestLabDownLeavesAnIncusThatIsNotTheLabsAlone(t *testing.T) {
	f := aRealHost(t)
	canRunLabSh(t)
	runID := fmt.Sprintf("r-labsh-%d", time.Now().UnixNano()%1e9)
	obs, err := egress.Start(context.Background(), []string{"lo"}, runID)
	require.NoError(t, err, "a running harness run's egress table")
	t.Cleanup(func() { _ = obs.Close() })

	out, err := labSh(t, f.Socket, "down")
	assert.NoError(t, err, "output:\n%s", out)
	assert.Contains(t, out, "not the lab's: no instance touched")
	assert.Empty(t, f.changes(), "lab down sent no change to this Incus")
	assert.True(t, egress.Exists(context.Background(), runID), "the egress table of run %s is still there; output:\n%s", runID, out)
}

// The lab tooling changes only the Incus it checked. An operator's incus CLI
// may point elsewhere — its default remote switched to a real host, or
// INCUS_REMOTE/INCUS_PROJECT set — and a bare `incus delete` in lab.sh would
// go there. Here the CLI's default remote is a recording fake: `lab up` and
// `lab down`, run against a lab-marked Incus, send it nothing.
func TestTheLabToolingTalksOnlyToTheIncusItChecked(t *testing.T) {
	canRunLabSh(t)
	lab := newFakeIncus(t)
	lab.config[labclaim.MarkerKey] = labclaim.MarkerValue
	elsewhere := newFakeIncus(t)
	conf := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(conf, "config.yml"),
		[]byte("default-remote: b1\nremotes:\n  b1:\n    addr: unix://"+elsewhere.Socket+"\n    protocol: incus\n"), 0o600))
	// nft is the host's: a stand-in, so the lab-marked fake's `down` sweeps no real egress table.
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "nft"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	env := []string{"INCUS_CONF=" + conf, "INCUS_REMOTE=b1", "INCUS_PROJECT=terraform-ci", "PATH=" + bin + ":" + os.Getenv("PATH")}

	for _, verb := range []string{"down", "up"} {
		out, _ := labSh(t, lab.Socket, verb, env...) // up stops at the fake's first unanswered change; that is enough
		assert.Empty(t, elsewhere.all(), "lab %s sent requests to the CLI's default remote; output:\n%s", verb, out)
	}
	assert.NotEmpty(t, lab.all(), "the incus CLI talked to the lab's socket")
}

// `lab.sh sweep` (which `up` runs before its seed runs) deletes the
// instances of runs that died with their guardian — a machine stopped
// mid-run left two, and every later run was refused by the RAM cap — and
// only those it proves dead: a run's lease file that nobody holds. Not a
// run whose guardian holds its lease, even from another PID namespace
// (the audit's: invisible to a process list), not a run with no lease at
// all (a run without a guardian, under its TTL), not a machine kept on
// purpose, not an unlabelled one.
func TestLabSweepTakesOnlyWhatDeadRunsLeft(t *testing.T) {
	canRunLabSh(t)
	c, cfg := labtest.Client(t, "unix")
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	start := func(prefix string, labels map[string]string) string {
		return labtest.Decoy{Project: cfg.Machine.Project, Image: cfg.Machine.Image, Prefix: prefix, Config: labels}.Start(t, c)
	}
	run := func(id string) map[string]string {
		return map[string]string{l.CreatedBy(): machine.CreatedBy, l.RunID(): id}
	}
	leases := t.TempDir()
	lease := func(id string) string {
		p := filepath.Join(leases, id+".lease")
		require.NoError(t, os.WriteFile(p, nil, 0o644))
		return p
	}
	orphan := start("sweep-orphan", run("r-dead-run"))
	deadLease := lease("r-dead-run")
	leaseless := start("sweep-leaseless", run("r-no-lease"))
	keptLabels := run("r-kept-run")
	keptLabels[l.Kept()] = "true"
	kept := start("sweep-kept", keptLabels)
	lease("r-kept-run")
	unlabelled := start("sweep-unlabelled", nil)
	exists := func(name string) bool {
		_, err := c.Instance(context.Background(), cfg.Machine.Project, name)
		if err != nil && !errors.Is(err, incus.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	env := []string{"LAB_PROJECT=" + cfg.Machine.Project, "LAB_LABEL_PREFIX=" + cfg.Guardrails.LabelPrefix, "CCCI_LEASE_DIR=" + leases}

	// The run is alive: its guardian holds the lease, from a PID namespace
	// of its own where it can (no process list here shows it).
	holder := []string{"flock", deadLease, "sleep", "600"}
	if exec.Command("unshare", "-p", "-f", "--mount-proc", "true").Run() == nil {
		holder = append([]string{"unshare", "-p", "-f", "--kill-child", "--mount-proc"}, holder...)
	}
	guardian := exec.Command(holder[0], holder[1:]...)
	guardian.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its group goes at once: sleep inherits the lock
	require.NoError(t, guardian.Start())
	require.Eventually(t, func() bool { return exec.Command("flock", "-n", deadLease, "true").Run() != nil }, 10*time.Second, 50*time.Millisecond,
		"the stand-in guardian holds the lease")
	out, err := labSh(t, cfg.Incus.Socket, "sweep", env...)
	_ = syscall.Kill(-guardian.Process.Pid, syscall.SIGKILL)
	_ = guardian.Wait()
	require.NoError(t, err, "output:\n%s", out)
	assert.True(t, exists(orphan), "its guardian holds its lease: the run is alive; output:\n%s", out)
	assert.Contains(t, out, "run r-dead-run not proven dead")

	require.Eventually(t, func() bool { return exec.Command("flock", "-n", deadLease, "true").Run() == nil }, 10*time.Second, 50*time.Millisecond,
		"the guardian is gone: nobody holds the lease")
	out, err = labSh(t, cfg.Incus.Socket, "sweep", env...)
	require.NoError(t, err, "output:\n%s", out)
	assert.False(t, exists(orphan), "the dead run's instance is deleted; output:\n%s", out)
	assert.NoFileExists(t, deadLease, "and its lease")
	assert.True(t, exists(leaseless), "a run with no lease is not proven dead: left to the reaper's TTL; output:\n%s", out)
	assert.True(t, exists(kept), "the kept machine stays for SKIP_provision; output:\n%s", out)
	assert.True(t, exists(unlabelled), "an instance without the harness's label is never touched; output:\n%s", out)
}
