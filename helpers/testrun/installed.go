package testrun

// The installed machine as a handle: what the checks of the installed system
// ask of it, by name, each method saying what it guarantees — in the spirit
// of the NixOS test driver's Machine. The run keeps one machine and one
// install; a handle is a test's view of them, with its own SSH connection.

import (
	"sync"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// Installed is the run's machine once install.md ran to its end with every
// block exiting 0.
type Installed struct {
	*machine.Machine
	SSH     *remote.Client // this handle's connection, closed when the test that asked ends
	Install *Install       // what the install did
	r       *Run
}

// Installed is the run's machine after a successful install, with an SSH
// connection of its own. After a failed install there is nothing to check on
// the machine: the test that owns the cause fails on it (C4, or C3 for an
// operator step), every other test skips naming it.
func (r *Run) Installed(t testing.TB) *Installed {
	t.Helper()
	mc := r.Machine(t)
	inst := r.InstallSucceeded(t)
	return r.connected(t, mc, inst)
}

func (r *Run) connected(t testing.TB, mc *machine.Machine, inst *Install) *Installed {
	t.Helper()
	cl, err := mc.SSH(r.ctx)
	if err != nil {
		t.Fatalf("SSH to the installed machine %s: %v", mc.Name, err)
	}
	t.Cleanup(func() { cl.Close() })
	return &Installed{Machine: mc, SSH: cl, Install: inst, r: r}
}

// Declared is the target's sops secrets, templates and units at boot, as its
// NixOS configuration declares them (declared.Evaluate on this machine, from
// the pinned repos, once per run). A failure fails the check that asked:
// the declarations are the target's.
func (m *Installed) Declared(t testing.TB) *declared.Declarations {
	t.Helper()
	return m.r.declarations(t)
}

// TLSAddr is where the served names are asked: CCCI_TLS_ADDR, else this
// machine's port 443. A CCCI_TLS_ADDR that is another instance's address
// fails the caller: TLS judged there would judge that instance.
func (m *Installed) TLSAddr(t testing.TB) string {
	t.Helper()
	return m.r.tlsAddr(t)
}

// UpSince is when the machine last came up with the target's system: the
// install's end, or the last restart's — what a service that binds late (a
// proxy a swarm oneshot deploys) is given CCCI_TLS_READY from, after a boot
// as after the switch.
func (m *Installed) UpSince() time.Time {
	up := m.Install.Ended
	m.r.conv.mu.Lock()
	defer m.r.conv.mu.Unlock()
	if m.r.conv.restarted.After(up) {
		up = m.r.conv.restarted
	}
	return up
}

// Restart restarts the machine through Incus — a clean shutdown within
// CCCI_SHUTDOWN_TIMEOUT, else a forced stop, noted in the evidence — and
// waits, within the boot timeout, until it answers again with its pinned
// host key; the handle it returns has a new connection.
func (m *Installed) Restart(t testing.TB) *Installed {
	t.Helper()
	r := m.r
	forced, err := m.Machine.Restart(r.ctx, r.Config.Timeouts.Shutdown, r.Config.Timeouts.BootTimeout, r.Config.Machine.SSHKeyVia)
	if forced {
		r.Note("restart", "the machine was not down within CCCI_SHUTDOWN_TIMEOUT (%s) of the shutdown request: Incus forced the stop", r.Config.Timeouts.Shutdown)
	}
	if err != nil {
		t.Fatalf("restart the machine through Incus: %v", err)
	}
	r.conv.mu.Lock()
	r.conv.restarted = time.Now()
	r.conv.mu.Unlock()
	return r.connected(t, m.Machine, m.Install)
}

// MarkConverged records the units C4 saw converge and settle, for its last
// look at the end of the run.
func (m *Installed) MarkConverged(units []probe.UnitState) {
	m.r.conv.mu.Lock()
	defer m.r.conv.mu.Unlock()
	m.r.conv.seen = &Converged{Units: units, At: time.Now()}
}

// Converged is what C4 recorded (MarkConverged). A test that needs it
// skips, naming why, when C4 never saw the units converge.
func (m *Installed) Converged(t testing.TB) *Converged {
	t.Helper()
	m.r.conv.mu.Lock()
	defer m.r.conv.mu.Unlock()
	if m.r.conv.seen == nil {
		t.Skipf("cannot judge: the units were not seen converged in this run (%s judges them, and fails when they do not)", installOwner)
	}
	return m.r.conv.seen
}

// Converged is the units as C4 saw them once they had converged and
// settled: main PIDs and restart counts included.
type Converged struct {
	Units []probe.UnitState
	At    time.Time
}

// convergedState is what C4 saw converge, kept for its last look at the end
// of the run, and when the machine last came back from a restart.
type convergedState struct {
	mu        sync.Mutex
	seen      *Converged
	restarted time.Time
}
