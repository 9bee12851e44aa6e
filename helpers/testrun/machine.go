package testrun

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// machineStage is the run's one machine, from provision to teardown.
type machineStage struct {
	mu          sync.Mutex // held while provisioning, so teardown waits for a creation in flight
	machine     *machine.Machine
	blank       BlankReport // what the machine held when it was handed to the tests
	err         error
	reused      bool         // SKIP_provision: the state file is ours to remove after teardown
	keptInstall *keptInstall // the install the kept machine had (SKIP_install)
	once        sync.Once    // teardown
	teardownErr error
	lateEgress  error // what the machine sent after C3 judged, not allowed: fails the run
}

// Machine returns the run's throwaway machine, creating it on first use
// (so `-run TestC7` does not boot one). A creation failure fails every test
// that needs the machine with the same error.
func (r *Run) Machine(t testing.TB) *machine.Machine {
	t.Helper()
	r.Require(t)
	if r.Config.Stages.NoMachine {
		t.Skip(NoMachineSkip)
	}
	mc, err := r.provisionOnce()
	if refused := (*refusedError)(nil); errors.As(err, &refused) {
		// Only the owner test itself fails here (C4, for a lock-out); a
		// sentence that needed the machine could not judge, whoever's it
		// is. The install's own sentence fails through InstallRecord.
		if owned := (*ownedError)(nil); errors.As(refused.err, &owned) && t.Name() == owned.owner {
			t.Fatalf("%v", refused)
		}
		t.Skipf("cannot judge: %v", refused)
	}
	if err != nil {
		t.Fatalf("provision stage: %v", err)
	}
	return mc
}

// provisionOnce provisions the machine the first time it is asked, and
// then answers what that gave.
func (r *Run) provisionOnce() (*machine.Machine, error) {
	r.stage.mu.Lock()
	defer r.stage.mu.Unlock()
	if r.stage.machine == nil && r.stage.err == nil {
		r.stage.machine, r.stage.err = r.provision()
	}
	return r.stage.machine, r.stage.err
}

// NoMachineSkip is what a test or sentence that needs the machine says when
// the run creates none (CCCI_MACHINE=none).
const NoMachineSkip = "needs a machine, and CCCI_MACHINE=none creates none: the repos, the Incus API and the evidence are judged alone"

// BlankReport is the machine's state as provisioned, before any test ran on it.
type BlankReport struct {
	Residue []string // cc-ci paths, units, age keys found (empty: blank)
	// The store before the install: every path in it, and the closure of
	// the system the machine was running (a blank NixOS image's own).
	Store, Baseline map[string]bool
	Err             error // the probe itself failed
}

// Blank returns what the machine held when it was provisioned.
func (r *Run) Blank(t testing.TB) BlankReport {
	t.Helper()
	r.Machine(t)
	hangFault(r.ctx, "hang:after-provision")
	return r.stage.blank
}

// observeBlank reads, read-only, whether the machine carries anything of cc-ci.
func (r *Run) observeBlank(mc *machine.Machine) {
	ctx, cancel := context.WithTimeout(r.ctx, r.Config.Timeouts.Scan)
	defer cancel()
	cl, err := mc.SSH(ctx)
	if err != nil {
		r.stage.blank.Err = err
		return
	}
	defer cl.Close()
	b := &r.stage.blank
	b.Residue, b.Err = probe.Residue(ctx, cl, append(r.Config.Expect.BlankAbsent, r.Config.Target.AgeKeyPath), "cc-ci-*",
		[]string{"/root", "/etc", "/var/lib", "/srv", "/home", "/tmp"})
	if b.Err == nil {
		b.Store, b.Baseline, b.Err = storeBefore(ctx, cl)
	}
}

// storeBefore reads the store as the image has it, before the install.
func storeBefore(ctx context.Context, cl *remote.Client) (store, baseline map[string]bool, err error) {
	if store, err = probe.StoreNames(ctx, cl); err != nil {
		return nil, nil, err
	}
	baseline = map[string]bool{}
	sys, err := probe.CurrentSystem(ctx, cl)
	if err != nil || sys == "" {
		return store, baseline, err
	}
	closure, err := probe.Closure(ctx, cl, sys)
	for _, p := range closure {
		baseline[p] = true
	}
	return store, baseline, err
}

func (r *Run) provision() (*machine.Machine, error) {
	if r.Config.Stages.ReuseMachine {
		kept, inst, err := loadState(r.Config.Machine.StateFile)
		if err != nil {
			return nil, err
		}
		r.stage.keptInstall = inst
		// The state file is input like any other: it is believed only as far
		// as Incus confirms it (project, labels, uuid, host key).
		ctx, cancel := context.WithTimeout(r.ctx, bounds.Reuse)
		defer cancel()
		mc, err := r.Manager.Reuse(ctx, kept)
		if err != nil {
			return nil, fmt.Errorf("SKIP_provision: the machine in %s cannot be reused: %w", r.Config.Machine.StateFile, err)
		}
		r.stage.reused = true
		if err := errors.Join(r.guardian.Track(mc.Project, mc.Name), r.guardian.Pin(mc.Project, mc.Name, mc.UUID)); err != nil {
			return nil, err
		}
		logf("SKIP_provision: reusing %s/%s at %s from %s", mc.Project, mc.Name, mc.IP, r.Config.Machine.StateFile)
		r.watchKept(mc)
		r.observeBlank(mc)
		return mc, nil
	}
	if r.installSteps() > 0 { // the target loaded: judge its install before anything else is asked for it
		if err := r.refusal(r.tgt.view); err != nil {
			logf("%s: %v", RefusedBeforeMachine, err)
			return nil, &refusedError{err}
		}
	}
	if err := r.checkTime(r.installSteps()); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.Config.Timeouts.CreateTimeout+r.Config.Timeouts.BootTimeout)
	defer cancel()
	mc, err := r.Manager.Create(ctx, machine.SpecFrom(r.Config))
	if err != nil {
		return nil, err
	}
	r.observeBlank(mc)
	return mc, nil
}

// teardown destroys the run's machines once, or keeps them with SKIP_teardown.
func (r *Run) teardown() error {
	r.stage.once.Do(func() {
		if r.Manager == nil {
			return
		}
		r.stage.mu.Lock()
		defer r.stage.mu.Unlock()
		// A fresh context: the run's own may be cancelled by the interrupt we
		// are handling. Bounded by the reserve kept for it before -timeout.
		ctx, cancel := context.WithTimeout(context.Background(), r.Config.Timeouts.TeardownReserve)
		defer cancel()
		if r.Config.Stages.KeepMachine {
			if mc := r.stage.machine; mc != nil {
				if err := mc.MarkKept(ctx); err != nil {
					logf("SKIP_teardown: %v (lab up will take the machine for a dead run's orphan)", err)
				}
				if err := saveState(r.Config.Machine.StateFile, mc, r.installToKeep()); err != nil {
					r.stage.teardownErr = err
					logf("SKIP_teardown: %v (the machine %s/%s is kept, but cannot be reused)", err, mc.Project, mc.Name)
				} else {
					logf("SKIP_teardown: kept %s/%s at %s; state in %s (reuse with SKIP_provision=1)", mc.Project, mc.Name, mc.IP, r.Config.Machine.StateFile)
				}
			}
			r.guardian.release("keep")
			return
		}
		r.stage.lateEgress = r.egressAtTeardown()
		r.stage.teardownErr = errors.Join(r.Manager.DestroyAll(ctx), r.verifyCleanup(ctx))
		if r.stage.teardownErr != nil {
			logf("teardown: %v", r.stage.teardownErr)
			// Leave the guardian to try again from its own process.
			r.guardian.w.Close()
			return
		}
		if r.stage.reused {
			removeState(r.Config.Machine.StateFile)
		}
		r.guardian.release("done")
	})
	return errors.Join(r.stage.teardownErr, r.stage.lateEgress)
}

// verifyCleanup is C6's second half: after teardown, no instance of this run
// (or of the run whose machine it reused) is left in any allowed project
// (asked of the API, not assumed).
func (r *Run) verifyCleanup(ctx context.Context) error {
	labels := machine.Labels{Prefix: r.Config.Guardrails.LabelPrefix}
	runs := map[string]bool{r.ID: true}
	for _, mc := range r.Manager.Adopted() {
		runs[mc.RunID] = true
	}
	var left []string
	for _, p := range r.Config.Guardrails.AllowedProjects {
		ins, err := r.Incus.Instances(ctx, p)
		if err != nil {
			return fmt.Errorf("C6 cleanup: list %s: %w", p, err)
		}
		for _, in := range ins {
			if runs[in.Config[labels.RunID()]] {
				left = append(left, p+"/"+in.Name)
			}
		}
	}
	if len(left) > 0 {
		logf("C6 cleanup: FAIL: %v still present after teardown", left)
		return fmt.Errorf("C6 cleanup: instances of run %s still present after teardown: %v", r.ID, left)
	}
	logf("C6 cleanup: PASS: no instance of run %s remains (%d created, %d reused)", r.ID, len(r.Manager.Created()), len(r.Manager.Adopted()))
	return nil
}
