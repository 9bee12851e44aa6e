package testrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/target"
)

// TargetView is the target as git holds it: both repos, its install
// document, and its secrets decrypted in memory (registered for redaction).
type TargetView struct {
	Repos   *target.Repos
	Doc     *installdoc.Doc
	Secrets map[string]string
	Key     *target.AgeKey
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

// Contact is one destination the machine opened a connection to during a step.
type Contact struct {
	Step string
	Dest egress.Dest
}

type targetState struct {
	once    sync.Once
	repos   *target.Repos // fetched, even when the rest of the target does not load
	view    *TargetView
	err     error
	install sync.Once
	inst    *Install
}

// The two failures every other check depends on, and the test whose
// sentence each breaks. That test fails on it; every other test that needs
// the target (or the installed machine) skips, naming the cause — one defect
// reads as one failure, not six. The run fails either way (Main).
const (
	// "every required secret is in git, encrypted": a tampered MAC, a
	// plaintext value, a file the key cannot open.
	secretsOwner = "TestC3AllSecretsInGitOneException"
	// "install.md, followed exactly, must succeed".
	installOwner = "TestC4GenuineLiveRebuild"
	// An install that needs an operator step besides the age key: "with
	// only the age key, the install succeeds" (also C3).
	outOfBandOwner = secretsOwner
)

// ownedError is a failure attributed to the test whose sentence it breaks.
type ownedError struct {
	owner string
	err   error
}

func (e *ownedError) Error() string { return e.err.Error() }
func (e *ownedError) Unwrap() error { return e.err }

// blocked fails t with err when t owns it (or nobody does), and skips it
// otherwise, saying what it could not judge and which test fails instead.
func blocked(t testing.TB, what string, err error) {
	t.Helper()
	var owned *ownedError
	if errors.As(err, &owned) && topLevel(t.Name()) != owned.owner {
		t.Skipf("cannot judge: %s: %v (%s fails on it)", what, err, owned.owner)
	}
	t.Fatalf("%s: %v", what, err)
}

func topLevel(name string) string { top, _, _ := strings.Cut(name, "/"); return top }

// blockingError is the target or install failure that decided the run, if any.
func (r *Run) blockingError() error {
	if r.tgt.err != nil {
		return fmt.Errorf("the target does not load: %w", r.tgt.err)
	}
	if in := r.tgt.inst; in != nil && in.Err != nil {
		return fmt.Errorf("the install failed: %w", in.Err)
	}
	return nil
}

// loadTargetOnce fetches and reads the target, the first time it is asked.
func (r *Run) loadTargetOnce() {
	r.tgt.once.Do(func() { r.tgt.view, r.tgt.err = r.loadTarget() })
}

// Target fetches and reads the target once per run (no machine needed).
func (r *Run) Target(t testing.TB) *TargetView {
	t.Helper()
	r.Require(t)
	r.loadTargetOnce()
	if r.tgt.err != nil {
		blocked(t, "the target does not load", r.tgt.err)
	}
	return r.tgt.view
}

// installSteps is how many blocks the run's install will follow (0 when no
// target is configured or it does not load: nothing will be installed).
func (r *Run) installSteps() int {
	if !r.Config.HasTarget() {
		return 0
	}
	r.loadTargetOnce()
	if r.tgt.err != nil {
		return 0
	}
	return len(r.tgt.view.Doc.Blocks)
}

func (r *Run) loadTarget() (*TargetView, error) {
	cfg := r.Config
	if !cfg.HasTarget() {
		return nil, target.ErrNoTarget
	}
	dir, err := os.MkdirTemp("", "ccci-target-")
	if err != nil {
		return nil, err
	}
	r.local.add(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(r.ctx, cfg.Timeouts.StepTimeout)
	defer cancel()
	repos, err := target.Fetch(ctx, dir, cfg.Target, r.key, r.Redact)
	if err != nil {
		return nil, err
	}
	r.tgt.repos = repos
	secrets, err := target.Secrets(repos, r.key, r.Redact)
	if err != nil {
		return nil, &ownedError{secretsOwner, err}
	}
	text, err := target.ReadBase(repos, target.InstallDoc)
	if err != nil {
		return nil, fmt.Errorf("base repo: %w", err)
	}
	doc, err := installdoc.Parse(target.InstallDoc, []byte(text), r.placeholders(""))
	if err != nil {
		return nil, &ownedError{installOwner, err}
	}
	logf("target: base %s, secrets %s, %s manifest %s (%d steps)", repos.BaseCommit[:12], repos.SecretsCommit[:12],
		target.InstallDoc, doc.Manifest[:12], len(doc.Blocks))
	return &TargetView{Repos: repos, Doc: doc, Secrets: secrets, Key: r.key}, nil
}

// Repos are the target's two repos as fetched: for a check that reads
// committed files only, and must judge them even when the secrets do not
// decrypt or install.md does not parse (other tests own those failures).
func (r *Run) Repos(t testing.TB) *target.Repos {
	t.Helper()
	r.Require(t)
	r.loadTargetOnce()
	if r.tgt.repos == nil {
		blocked(t, "the target's repos do not fetch", r.tgt.err)
	}
	return r.tgt.repos
}

// Value is the decrypted value of a declared secret: its key in the sops
// file it names.
func (v *TargetView) Value(s declared.Secret) (string, bool) {
	val, ok := v.Secrets[target.SecretName(s.SopsFile, s.Key)]
	return val, ok
}

// AllSecrets is every secret the target has (target.AllSecrets).
func (v *TargetView) AllSecrets() map[string]string {
	return target.AllSecrets(v.Repos, v.Key, v.Secrets)
}

// placeholders are the values install.md may use.
func (r *Run) placeholders(machineIP string) map[string]string {
	if machineIP == "" {
		machineIP = target.MachineStandIn
	}
	return target.Placeholders(r.Config.Target.BaseRepoURL, r.Config.Target.SecretsRepoURL, r.Config.Target.Domain, r.Config.Target.Gateway, machineIP)
}

// Installed runs the target's install.md on the run's machine, once, and
// returns what happened. It does not fail the test when the install fails:
// each test judges the record for itself.
func (r *Run) Installed(t testing.TB) *Install {
	t.Helper()
	view := r.Target(t)
	mc := r.Machine(t)
	r.tgt.install.Do(func() {
		inst := &Install{}
		r.tgt.inst = inst
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
	return r.tgt.inst
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

// JudgeInstall is Installed for the test that judges the install itself
// (C4): an install failure another test owns (an operator step besides the
// age key: C3) skips it, naming the cause; any other failure is returned to
// be judged, the machine's unit states saying why.
func (r *Run) JudgeInstall(t testing.TB) *Install {
	t.Helper()
	inst := r.Installed(t)
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
	in := r.tgt.inst
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

// RequireInstalled is Installed for a check that needs the installed
// machine: a failed install fails the test that owns its cause (C4, or C3
// for an operator step besides the age key) and skips the others, naming it.
func (r *Run) RequireInstalled(t testing.TB) *Install {
	t.Helper()
	inst := r.JudgeInstall(t)
	if inst.Err != nil {
		blocked(t, "the install failed", &ownedError{installOwner, inst.Err})
	}
	return inst
}

// injectFault panics at a named point when CCCI_FAULT says so: the harness's
// own tests use it to prove a panicking check still tears down and leaves
// evidence. Never set it otherwise.
func injectFault(point string) {
	if os.Getenv("CCCI_FAULT") == point {
		panic("injected fault (CCCI_FAULT=" + point + ")")
	}
}

// hangFault blocks a check at a named point until the run is cut short
// (CCCI_FAULT=hang:…): a check stuck in its own work, which only go test's
// -timeout deadline ends. Never set it otherwise.
func hangFault(ctx context.Context, point string) {
	if os.Getenv("CCCI_FAULT") == point {
		<-ctx.Done()
	}
}

// WriteLiveRecord writes this run's live-rebuild record for the reviewer to
// commit into the target's D8 evidence: under CCCI_OUT_DIR, never into a
// clone of the target. An existing file or a symlink in its place is refused.
func (r *Run) WriteLiveRecord(text string) (string, error) {
	if err := os.MkdirAll(r.Config.Evidence.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("live record: %w", err)
	}
	p := filepath.Join(r.Config.Evidence.OutDir, "d8-live-"+r.ID+".md")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return "", fmt.Errorf("live record: %w", err)
	}
	if _, err := f.WriteString(r.Redact.Redact(text)); err != nil {
		f.Close()
		return "", fmt.Errorf("live record: %w", err)
	}
	return p, f.Close()
}
