package testrun

// What the target declares, read once per run on the installed machine.

import (
	"context"
	"sync"
	"testing"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/target"
)

// sshDialer opens an SSH connection to the run's machine.
type sshDialer func(context.Context) (*remote.Client, error)

type declaredState struct {
	once sync.Once
	decl *declared.Declarations
	err  error
}

// DeclaredInGit is what the target declares, read even when the install
// failed (the evaluation needs only the pinned repos and the machine's Nix,
// as for Units): for a check of the declarations against git, such as
// "every secret it declares is in its sops file".
func (r *Run) DeclaredInGit(t testing.TB) *declared.Declarations {
	t.Helper()
	return r.declarations(t)
}

// Units are the units that must converge: CCCI_UNITS when set, otherwise
// the services the target's configuration starts at boot (Declarations.Units).
// Read even when the install failed: the evaluation needs only the repos
// and the machine's Nix, and the unit states then say what went wrong.
func (r *Run) Units(t testing.TB) []string {
	t.Helper()
	if len(r.Config.Expect.Units) > 0 {
		return r.Config.Expect.Units
	}
	d := r.declarations(t)
	if len(d.Units) == 0 {
		t.Fatalf("nixosConfigurations.%s starts no service at boot (systemd.services.<name>.wantedBy = [ \"multi-user.target\" ]): nothing to converge; name the units with CCCI_UNITS",
			d.Host)
	}
	return d.Units
}

func (r *Run) declarations(t testing.TB) *declared.Declarations {
	t.Helper()
	view := r.Target(t)
	mc := r.Machine(t)
	r.decl.once.Do(func() { r.decl.decl, r.decl.err = r.evaluateDeclarations(view, mc.SSH) })
	if r.decl.err != nil {
		t.Fatalf("read what the target declares: %v", r.decl.err)
	}
	return r.decl.decl
}

// source is how a machine gets the pinned repos: their committed trees and
// how the base pins the secrets repo.
func (r *Run) source(view *TargetView) (declared.Source, error) {
	return target.EvalSource(r.ctx, view.Repos, r.Config.Target.SecretsRepoURL)
}

func (r *Run) evaluateDeclarations(view *TargetView, dial sshDialer) (*declared.Declarations, error) {
	src, err := r.source(view)
	if err != nil {
		return nil, err
	}
	cl, err := dial(r.ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	d, err := declared.Evaluate(r.ctx, cl, src, r.Config.Target.NixOSHost, r.Config.Timeouts.StepTimeout)
	if err == nil {
		r.Note("declared", "nixosConfigurations.%s: %d sops secrets %v, %d templates, units started at boot %v", d.Host, len(d.Secrets), d.Names(), len(d.Templates), d.Units)
	}
	return d, err
}
