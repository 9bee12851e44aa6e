package testrun

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/target"
)

// TargetView is the target as git holds it: both repos, its install
// document, and its secrets decrypted in memory (registered for redaction).
type TargetView struct {
	Repos   *target.Repos
	Doc     *installdoc.Doc
	Secrets map[string]string
	Key     *target.AgeKey
	redact  *redact.Redactor // what Value decrypts is registered with it
}

type targetState struct {
	once  sync.Once
	repos *target.Repos // fetched, even when the rest of the target does not load
	view  *TargetView
	err   error
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
	dir, err := os.MkdirTemp("", runTempPrefix+"target-")
	if err != nil {
		return nil, err
	}
	r.local.add(func() { os.RemoveAll(dir) })
	if err := r.guardian.TempDir(dir); err != nil { // a run killed mid-clone leaves no clone, no key
		return nil, err
	}
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
	return &TargetView{Repos: repos, Doc: doc, Secrets: secrets, Key: r.key, redact: r.Redact}, nil
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

// Value is the decrypted value of a declared secret, as sops-nix installs
// it (target.DeclaredValue: its key in the sops file it names, or the whole
// file for its format or an empty key).
func (v *TargetView) Value(s declared.Secret) (string, error) {
	return target.DeclaredValue(v.Repos, v.Key, v.Secrets, s.SopsFile, s.Format, s.Key, v.redact)
}

// NameOf is the name among AllSecrets of what sops-nix installs for s —
// found by value, since a binary or whole-file secret's key is not where
// its value is named — or s's own name when it is none of them.
func (v *TargetView) NameOf(s declared.Secret) string {
	value, err := v.Value(s)
	all := v.AllSecrets()
	if err == nil {
		for _, name := range slices.Sorted(maps.Keys(all)) {
			if all[name] == value {
				return name
			}
		}
	}
	return s.Name
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
