package testrun

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/fetchlog"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/sshaccess"
	"github.com/cc-ci/acceptance/helpers/target"
)

// installState is the run's one install, from the first caller on.
type installState struct {
	once sync.Once
	done *Install

	refuseOnce sync.Once
	refused    error // why install.md is refused before its first step (refusal)
}

// refusal is why install.md will be refused before its first step — an
// operator step the harness does not do (C3's cause) or a target whose sshd,
// as the switch will leave it, locks the run out (C4's) — judged once, from
// the repos alone: the run creates no machine for an install it refuses.
func (r *Run) refusal(view *TargetView) error {
	r.install.refuseOnce.Do(func() {
		operators := target.Operators(nil, r.Config.Target.AgeKeyPath, r.key) // their names: nothing is pushed here
		check := &installdoc.Runner{AgeKeyPath: r.Config.Target.AgeKeyPath, Operators: operators}
		if err := check.Check(view.Doc); err != nil {
			r.install.refused = &ownedError{outOfBandOwner, err}
		} else if err := r.wayBackIn(view); err != nil {
			r.install.refused = &ownedError{installOwner, err}
		}
	})
	return r.install.refused
}

// refusedError is a machine not created because its install would be
// refused (refusal).
type refusedError struct{ err error }

func (e *refusedError) Error() string { return RefusedBeforeMachine + ": " + e.err.Error() }

func (e *refusedError) Unwrap() error { return e.err }

// RefusedBeforeMachine is what a test that needs the machine says when the
// run created none because its install would be refused.
const RefusedBeforeMachine = "no machine was created: install.md is refused before its first step"

// Install is the one install of this run on the run's machine.
type Install struct {
	Record  *installdoc.Record
	Err     error     // nil when every block ran and exited 0
	Started time.Time // when the first block was sent (the machine had its address)
	Ended   time.Time // when the last block returned (the switch, on success)
	// What the machine sent from its start to the install's end, by step
	// (CCCI_EGRESS=nft): what a SKIP_install run judges again.
	Contacts []Contact
	// What git fetched during each step, by its own record on the machine
	// (fetchlog.FromGitTrace); Traced says git recorded anything at all.
	GitFetches []fetchlog.GitFetch
	Traced     bool
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
	if !r.Config.Stages.NoMachine {
		// No machine for an install.md refused before its first step: the
		// record says so, and the accessors below judge the refusal as they
		// would the same refusal on a machine (its owner fails on it).
		if _, err := r.provisionOnce(); errors.As(err, new(*refusedError)) {
			r.install.once.Do(func() {
				r.install.done = &Install{Record: &installdoc.Record{Doc: view.Doc.Path, Manifest: view.Doc.Manifest}, Err: err}
			})
			return r.install.done
		}
	}
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
		if inst.Err = r.refusal(view); inst.Err != nil { // provision refused it before this; kept for a reused machine
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
		// What the machine sent since it started, then during each step.
		r.sawUntil(r.ctx, egress.Boot)
		runner.AfterStep = func(b installdoc.Block) { r.sawUntil(r.ctx, b.Step) }
		// What git fetched during each step, in a directory of the step.
		steps := gitTraced(sh, r.Config.Timeouts.StepTimeout, runner)
		inst.Started = time.Now()
		inst.Record, inst.Err = runner.Run(r.ctx, doc)
		inst.Ended = time.Now()
		inst.GitFetches, inst.Traced = r.gitFetches(cl, steps)
		r.traffic.mu.Lock()
		inst.Contacts = append([]Contact(nil), r.traffic.contacts...)
		r.traffic.mu.Unlock()
		if inst.Err != nil {
			logf("install: %v", inst.Err)
		}
	})
	injectFault("panic:after-install")
	return r.install.done
}

// wayBackIn refuses the install when the target's sshd, as the switch will
// leave it, would lock the run out (judge.SSHLockout): cut off mid-run, the
// run would prove nothing and say less. Judged on the runner, before the
// first step; what cannot be judged there is noted, not failed.
func (r *Run) wayBackIn(view *TargetView) error {
	problems, unjudged, err := sshaccess.AfterSwitch(r.ctx, view.Repos, r.Config.Target.SecretsRepoURL, r.Config.Target.NixOSHost,
		r.Config.Machine.SSHUser, r.Config.Machine.SSHPort, r.Config.Timeouts.StepTimeout, r.Redact)
	switch {
	case err != nil:
		r.Note("sshd after the switch", "not judged before the install: %v", err)
	case unjudged != "":
		r.Note("sshd after the switch", "not judged before the install: %s", unjudged)
	case len(problems) > 0:
		return fmt.Errorf("before the install, the target's sshd as the switch will leave it: %s", judge.List(problems))
	default:
		r.Note("sshd after the switch", "lets %s in with the run's key in ~/.ssh/authorized_keys on port %d", r.Config.Machine.SSHUser, r.Config.Machine.SSHPort)
	}
	return nil
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
		inst.Record, inst.Started, inst.Ended, inst.Contacts = kept.Record, kept.Started, kept.Ended, kept.Contacts
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
	k := &keptInstall{RunID: r.ID, Record: in.Record, Started: in.Started, Ended: in.Ended, Contacts: in.Contacts}
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
