package acceptance

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C7 — Docs. install.md, secrets.md and architecture.md describe the new
// model: clone base + secrets, provision the age key, (external) DNS/gateway,
// one switch; no doc still describes an operator-dropped certificate file.
func TestC7Docs(t *testing.T) {
	view := run.Target(t)
	cfg := run.Config
	docs := map[string]string{}
	for _, p := range []string{target.InstallDoc, "docs/secrets.md", "architecture.md"} {
		text, err := target.ReadBase(view.Repos, p)
		if assert.NoError(t, err, "the base has %s", p) {
			docs[p] = text
		}
	}

	// install.md parsed (every shell block tagged, placeholders known) when
	// the target was loaded; here: its steps are the new model's.
	var cloneBase, cloneSecrets, ageKey, switches []string
	for _, b := range view.Doc.Blocks {
		switch {
		case b.Runs == installdoc.Operator && strings.Contains(b.Raw, cfg.AgeKeyPath):
			ageKey = append(ageKey, b.Step)
		case strings.Contains(b.Raw, "${SECRETS_REPO_URL}"):
			cloneSecrets = append(cloneSecrets, b.Step)
		case strings.Contains(b.Raw, "${BASE_REPO_URL}"):
			cloneBase = append(cloneBase, b.Step)
		}
		if switchCmd(b.Raw) {
			switches = append(switches, b.Step)
		}
	}
	assert.Len(t, cloneBase, 1, "one step clones the base repo")
	assert.Len(t, cloneSecrets, 1, "one step clones the secrets repo")
	assert.Len(t, ageKey, 1, "one operator step provisions the age key to %s", cfg.AgeKeyPath)
	assert.Len(t, switches, 1, "exactly one switch: %v", switches)

	install := strings.ToLower(docs[target.InstallDoc])
	assert.Contains(t, install, "dns", "install.md states the DNS precondition")
	assert.Contains(t, install, "gateway", "install.md states the gateway precondition")

	for path, text := range docs {
		for _, phrase := range cfg.StalePhrases {
			assert.False(t, target.ContainsPhrase(text, phrase), "%s still describes the operator-dropped certificate (%q)", path, phrase)
		}
	}
}

func switchCmd(body string) bool {
	return strings.Contains(body, "nixos-rebuild switch") || strings.Contains(body, "bin/switch")
}
