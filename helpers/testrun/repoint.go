package testrun

// The instance parameters, repointed: plan §2's "a one-line edit, not a fork".

import (
	"testing"

	"github.com/cc-ci/acceptance/helpers/repoint"
)

// Parameters are the instance parameters the run repoints (repoint.Parameters).
func (r *Run) Parameters() []repoint.Param {
	return repoint.Parameters(r.Config.Target.Domain, r.Config.Target.Gateway)
}

// ParameterSites are where the base sets p (repoint.Sites on its committed
// tree).
func (r *Run) ParameterSites(t testing.TB, p repoint.Param) []repoint.Site {
	t.Helper()
	base, _, err := r.Target(t).Repos.Trees(r.ctx)
	if err != nil {
		t.Fatalf("read the base's tree: %v", err)
	}
	sites, err := repoint.Sites(base, p.Value)
	if err != nil {
		t.Fatalf("where the base sets %s: %v", p.Name, err)
	}
	return sites
}

// Repointed rebuilds the base on this machine with every parameter changed
// at its one site to a fresh value (repoint.Observe). A parameter set in no
// place or several cannot be repointed by one edit: the check skips, naming
// it, and "each parameter is set once" fails.
func (m *Installed) Repointed(t testing.TB) *repoint.Facts {
	t.Helper()
	r := m.r
	var changes []repoint.Change
	for _, p := range r.Parameters() {
		sites := r.ParameterSites(t, p)
		if len(sites) != 1 {
			t.Skipf("%s (%q) is set at %d places of the base, not one: no single edit to make (see the sentence on where each parameter is set)", p.Name, p.Value, len(sites))
		}
		changes = append(changes, repoint.Change{Param: p, New: repoint.Fresh(p.Value), Site: sites[0]})
	}
	if len(changes) == 0 {
		t.Skip("no instance parameter is configured (CCCI_DOMAIN, CCCI_GATEWAY)")
	}
	src, err := r.source(r.Target(t))
	if err != nil {
		t.Fatalf("the pinned repos: %v", err)
	}
	f, err := repoint.Observe(r.ctx, m.SSH, src, r.Config.Target.NixOSHost, changes, r.Config.Timeouts.StepTimeout)
	if err != nil {
		t.Fatalf("repoint the base: %v", err)
	}
	for _, c := range changes {
		r.Note("repointed: "+c.Name, "%s %q → %q at %s: the running system held it in %d file(s), the rebuilt one holds the new value in %d and the old in %d",
			c.Name, c.Value, c.New, c.Site, len(f.Running.Made[c.Value]), len(f.Rebuilt.Made[c.New]), len(f.Rebuilt.Made[c.Value]))
	}
	return f
}
