package testrun

// What C4 saw converge, kept for its last look at the end of the run, and
// the restart of the run's machine that follows it.

import (
	"sync"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
)

// Converged is the units as C4 saw them once they had converged and
// settled: main PIDs and restart counts included.
type Converged struct {
	Units []probe.UnitState
	At    time.Time
}

type convergedState struct {
	mu        sync.Mutex
	seen      *Converged
	restarted time.Time // when the machine last answered again after a restart
}

// MarkConverged records the units C4 saw converge and settle.
func (r *Run) MarkConverged(units []probe.UnitState) {
	r.conv.mu.Lock()
	defer r.conv.mu.Unlock()
	r.conv.seen = &Converged{Units: units, At: time.Now()}
}

// ConvergedUnits is what C4 recorded. A test that needs it skips, naming
// why, when the install failed or C4 never saw the units converge.
func (r *Run) ConvergedUnits(t testing.TB) *Converged {
	t.Helper()
	r.InstallSucceeded(t)
	r.conv.mu.Lock()
	defer r.conv.mu.Unlock()
	if r.conv.seen == nil {
		t.Skipf("cannot judge: the units were not seen converged in this run (%s judges them, and fails when they do not)", installOwner)
	}
	return r.conv.seen
}

// RestartMachine restarts the run's machine through Incus — a clean
// shutdown within CCCI_SHUTDOWN_TIMEOUT, else a forced stop, noted in the
// evidence — and waits, within the boot timeout, until it answers again
// with its pinned host key.
func (r *Run) RestartMachine(t testing.TB) *machine.Machine {
	t.Helper()
	mc := r.Machine(t)
	forced, err := mc.Restart(r.ctx, r.Config.Timeouts.Shutdown, r.Config.Timeouts.BootTimeout, r.Config.Machine.SSHKeyVia)
	if forced {
		r.Note("restart", "the machine was not down within CCCI_SHUTDOWN_TIMEOUT (%s) of the shutdown request: Incus forced the stop", r.Config.Timeouts.Shutdown)
	}
	if err != nil {
		t.Fatalf("restart the machine through Incus: %v", err)
	}
	r.conv.mu.Lock()
	r.conv.restarted = time.Now()
	r.conv.mu.Unlock()
	return mc
}

// UpSince is when the machine last came up with the target's system: the
// install's end, or the last restart's — what a service that binds late
// (a proxy a swarm oneshot deploys) is given CCCI_TLS_READY from, after a
// boot as after the switch.
func (r *Run) UpSince(t testing.TB) time.Time {
	t.Helper()
	up := r.InstallRecord(t).Ended
	r.conv.mu.Lock()
	defer r.conv.mu.Unlock()
	if r.conv.restarted.After(up) {
		up = r.conv.restarted
	}
	return up
}
