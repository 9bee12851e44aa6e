package acceptance

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C7 — Docs. install.md, secrets.md and architecture.md describe the new
// model: clone base + secrets, provision the age key, (external) DNS/gateway,
// one switch; no doc still describes an operator-dropped certificate file.
func TestC7Docs(t *testing.T) {
	view := run.Target(t)
	cfg := run.Config
	problems := judge.Docs(judge.PlanDocs, target.ReadDocs(view.Repos, judge.PlanDocs), cfg.Expect.StalePhrases)
	judge.None(t, problems, judge.DocsMissing)

	// install.md parsed (every shell block tagged, placeholders known) when
	// the target was loaded; here: its steps are the new model's.
	m := installdoc.ReadModel(view.Doc, cfg.Target.AgeKeyPath)
	assert.Len(t, m.CloneBase, 1, "one step clones the base repo")
	assert.Len(t, m.CloneSecrets, 1, "one step clones the secrets repo")
	assert.Len(t, m.AgeKey, 1, "one operator step provisions the age key to %s", cfg.Target.AgeKeyPath)
	assert.Len(t, m.Switches, 1, "exactly one switch: %v", m.Switches)

	judge.None(t, problems, judge.InstallPrecondition, judge.DocsStaleCertificate)
}
