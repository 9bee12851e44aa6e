package target

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const decisionsMD = `# Decisions

## Secrets repo linkage (C1)

**Flake input** (` + "`inputs.secrets`" + `, pinned by flake.lock). A git
submodule at ` + "`secrets/`" + ` was the alternative; the flake input is the default.

## Bootstrap key

The recovery age key is provisioned to the new host.

## Final cc-nix-test sizing (C6)

cc-nix-test stays at 4&nbsp;GB after the rebuild (6 GB → 4 GB in W1).
`

func TestDecisionsAreReadFromTheTargetsLog(t *testing.T) {
	d, err := ReadDecisions(baseRepo(t, map[string]string{DecisionsDoc: decisionsMD}, nil))
	require.NoError(t, err)
	assert.Equal(t, []string{"flake input", "git submodule"}, d.Linkage(), "the section names the choice and its alternative")
	assert.ElementsMatch(t, []int64{4e9, 4 << 30, 6e9, 6 << 30}, d.Sizing("cc-nix-test"), `"4 GB" both ways, and the 6 GB it came from`)
	assert.Empty(t, d.Sizing("lichen-staging"), "no section names it")

	none, err := ReadDecisions(baseRepo(t, map[string]string{"README.md": "x"}, nil))
	require.NoError(t, err, "no DECISIONS.md is no decision, not an error")
	assert.Empty(t, none.Linkage())
	assert.Empty(t, none.Sizing("cc-nix-test"))
}
