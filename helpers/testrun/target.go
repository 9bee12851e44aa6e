package testrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/target"
)

// TargetView is the target as git holds it: both repos, its install
// document, and its secrets decrypted in memory (registered for redaction).
type TargetView struct {
	Repos   *target.Repos
	Doc     *installdoc.Doc
	Secrets map[string]string
	Key     *target.AgeKey
	docSrc  []byte
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
	view    *TargetView
	err     error
	install sync.Once
	inst    *Install
}

// Target fetches and reads the target once per run (no machine needed).
func (r *Run) Target(t testing.TB) *TargetView {
	t.Helper()
	r.Require(t)
	r.tgt.once.Do(func() { r.tgt.view, r.tgt.err = r.loadTarget() })
	if r.tgt.err != nil {
		t.Fatalf("target: %v", r.tgt.err)
	}
	return r.tgt.view
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
	r.mu.Lock()
	r.cleanups = append(r.cleanups, func() { os.RemoveAll(dir) })
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, cfg.StepTimeout)
	defer cancel()
	repos, err := target.Fetch(ctx, dir, cfg.BaseRepoURL, cfg.SecretsRepoURL, r.key, r.Redact)
	if err != nil {
		return nil, err
	}
	secrets, err := target.Secrets(repos, r.key, r.Redact)
	if err != nil {
		return nil, err
	}
	text, err := target.ReadBase(repos, target.InstallDoc)
	if err != nil {
		return nil, fmt.Errorf("base repo: %w", err)
	}
	src := []byte(text)
	doc, err := installdoc.Parse(target.InstallDoc, src, r.placeholders(""))
	if err != nil {
		return nil, err
	}
	logf("target: base %s, secrets %s, %s manifest %s (%d steps)", repos.BaseCommit[:12], repos.SecretsCommit[:12],
		target.InstallDoc, doc.Manifest[:12], len(doc.Blocks))
	return &TargetView{Repos: repos, Doc: doc, Secrets: secrets, Key: r.key, docSrc: src}, nil
}

// AllSecrets is every secret the target has: the secrets repo's values, the
// secrets repo's read token and the bootstrap age key — what must never
// appear in plaintext anywhere.
func (v *TargetView) AllSecrets() map[string]string {
	all := map[string]string{"bootstrap-age-key": v.Key.Identity, "secrets-repo-token": v.Repos.AccessToken}
	for k, val := range v.Secrets {
		all[k] = val
	}
	return all
}

// placeholders are the values install.md may use.
func (r *Run) placeholders(machineIP string) map[string]string {
	if machineIP == "" {
		machineIP = "MACHINE-ADDRESS"
	}
	return target.Placeholders(r.Config.BaseRepoURL, r.Config.SecretsRepoURL, r.Config.Domain, r.Config.Gateway, machineIP)
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
		doc, err := installdoc.Parse(target.InstallDoc, view.docSrc, r.placeholders(mc.IP))
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
		runner := &installdoc.Runner{Shell: sh, Timeout: r.Config.StepTimeout, Redact: r.Redact, Log: logf,
			Operators: target.Operators(mc.PushFile, r.Config.AgeKeyPath, r.key)}
		if r.Config.Egress == "nft" {
			obs, err := egress.Start(r.ctx, mc.IP, r.ID)
			if err != nil {
				inst.EgressErr = err
			} else {
				// Closed after the install, and by the run's cleanups on every
				// exit path the process controls (interrupt, -timeout deadline).
				r.mu.Lock()
				r.cleanups = append(r.cleanups, func() { _ = obs.Close() })
				r.mu.Unlock()
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

// injectFault panics at a named point when CCCI_FAULT says so: the harness's
// own tests use it to prove a panicking check still tears down and leaves
// evidence. Never set it otherwise.
func injectFault(point string) {
	if os.Getenv("CCCI_FAULT") == point {
		panic("injected fault (CCCI_FAULT=" + point + ")")
	}
}

// WriteLiveRecord writes this run's live-rebuild record for the reviewer to
// commit into the target's D8 evidence: under CCCI_OUT_DIR, never into a
// clone of the target. An existing file or a symlink in its place is refused.
func (r *Run) WriteLiveRecord(text string) (string, error) {
	if err := os.MkdirAll(r.Config.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("live record: %w", err)
	}
	p := filepath.Join(r.Config.OutDir, "d8-live-"+r.ID+".md")
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
