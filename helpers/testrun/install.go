package testrun

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/target"
)

// installState is the run's one install, from the first caller on.
type installState struct {
	once sync.Once
	done *Install
}

// Install is the one install of this run on the run's machine.
type Install struct {
	Record *installdoc.Record
	Err    error     // nil when every block ran and exited 0
	Ended  time.Time // when the last block returned (the switch, on success)
	// What the machine connected to during the install, by step
	// (CCCI_EGRESS=nft); EgressErr says why it could not be observed.
	Contacts  []Contact
	EgressErr error
}

// The three install accessors differ by what they guarantee the caller:
//
//	InstallRecord     install.md ran (once): what happened, whatever it was
//	InstallInBand     and no out-of-band operator step failed it (C3's cause)
//	InstallSucceeded  and every block exited 0
//
// InstallRecord runs the target's install.md on the run's machine, once, and
// returns what happened. It never fails or skips the test: a check that
// judges the install itself (C3's secret-source check) reads the record.
func (r *Run) InstallRecord(t testing.TB) *Install {
	t.Helper()
	view := r.Target(t)
	mc := r.Machine(t)
	r.install.once.Do(func() {
		inst := &Install{}
		r.install.done = inst
		if r.Config.Stages.ReuseInstall {
			r.reuseInstall(inst)
			return
		}
		doc, err := view.Doc.Filled(r.placeholders(mc.IP))
		if err != nil {
			inst.Err = err
			return
		}
		cl, err := mc.SSH(r.ctx)
		if err != nil {
			inst.Err = err
			return
		}
		defer cl.Close()
		sh, err := cl.Shell(r.ctx)
		if err != nil {
			inst.Err = err
			return
		}
		defer sh.Close()
		runner := &installdoc.Runner{Shell: sh, Timeout: r.Config.Timeouts.StepTimeout, Redact: r.Redact, Log: logf, AgeKeyPath: r.Config.Target.AgeKeyPath,
			Operators: target.Operators(mc.PushFile, r.Config.Target.AgeKeyPath, r.key)}
		if r.Config.Expect.Egress == "nft" {
			obs, err := r.observeEgress(mc)
			if err != nil {
				inst.EgressErr = err
			} else {
				// Closed after the install, and by the run's cleanups on every
				// exit path the process controls (interrupt, -timeout deadline).
				r.local.add(func() { _ = obs.Close() })
				defer func() { inst.EgressErr = errors.Join(inst.EgressErr, obs.Close()) }()
				runner.AfterStep = func(b installdoc.Block) {
					fresh, err := obs.New(r.ctx)
					inst.EgressErr = errors.Join(inst.EgressErr, err)
					for _, d := range fresh {
						inst.Contacts = append(inst.Contacts, Contact{Step: b.Step, Dest: d})
					}
				}
			}
		}
		inst.Record, inst.Err = runner.Run(r.ctx, doc)
		inst.Ended = time.Now()
		if inst.Err != nil {
			logf("install: %v", inst.Err)
		}
	})
	injectFault("panic:after-install")
	return r.install.done
}

// observeEgress starts recording what the machine sends through each of
// its NICs (their host-side devices, as Incus reports them).
func (r *Run) observeEgress(mc *machine.Machine) (*egress.Observer, error) {
	in, err := mc.Verify(r.ctx)
	if err != nil {
		return nil, err
	}
	return egress.Start(r.ctx, in.NICDevices(), r.ID)
}

// InstallInBand is the install for the test that judges it (C4): a failure
// at an operator step besides the age key is C3's and skips the caller,
// naming it; any other failure is returned to be judged, the machine's unit
// states saying why.
func (r *Run) InstallInBand(t testing.TB) *Install {
	t.Helper()
	inst := r.InstallRecord(t)
	if oob := (*installdoc.OutOfBandError)(nil); errors.As(inst.Err, &oob) {
		blocked(t, "the install failed", &ownedError{outOfBandOwner, inst.Err})
	}
	return inst
}

// reuseInstall is SKIP_install: the checks run again on a kept machine that
// is already installed; install.md is not followed again.
func (r *Run) reuseInstall(inst *Install) {
	kept := r.stage.keptInstall
	switch {
	case kept == nil: // (SKIP_install without SKIP_provision is refused with the configuration)
		inst.Err = fmt.Errorf("SKIP_install=1: the kept machine was never installed (%s has no install record): run once without SKIP_install", r.Config.Machine.StateFile)
	default:
		inst.Record, inst.Ended, inst.Contacts = kept.Record, kept.Ended, kept.Contacts
		if kept.Failed != "" {
			inst.Err = errors.New(kept.Failed)
		}
		logf("SKIP_install: install.md not run again; the install of run %s is judged (%d steps)", kept.RunID, len(kept.Record.Steps))
	}
}

// installToKeep is what the state file keeps of this run's install (or of
// the one it reused), for a later SKIP_install.
func (r *Run) installToKeep() *keptInstall {
	in := r.install.done
	if in == nil || in.Record == nil {
		return r.stage.keptInstall
	}
	if r.stage.keptInstall != nil && r.Config.Stages.ReuseInstall {
		return r.stage.keptInstall
	}
	k := &keptInstall{RunID: r.ID, Record: in.Record, Ended: in.Ended, Contacts: in.Contacts}
	if in.Err != nil {
		k.Failed = r.Redact.Redact(in.Err.Error())
	}
	return k
}

// InstallSucceeded is the install every block of which exited 0, for a
// check that needs the installed machine: a failed install fails the test
// that owns its cause (C4, or C3 for an operator step besides the age key)
// and skips the others, naming it.
func (r *Run) InstallSucceeded(t testing.TB) *Install {
	t.Helper()
	inst := r.InstallInBand(t)
	if inst.Err != nil {
		blocked(t, "the install failed", &ownedError{installOwner, inst.Err})
	}
	return inst
}

// Contact is one destination the machine opened a connection to during a step.
type Contact struct {
	Step string
	Dest egress.Dest
}
