package installdoc

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The good fixture's document asks for the age key alone.
func TestTheFixturesDocumentAsksForTheAgeKeyAlone(t *testing.T) {
	src, err := os.ReadFile("../../fixtures/target/docs/install.md")
	require.NoError(t, err)
	doc, err := Parse("docs/install.md", src, map[string]string{"BASE_REPO_URL": "b", "SECRETS_REPO_URL": "s", "MACHINE": "m", "DOMAIN": "d", "GATEWAY": "g"})
	require.NoError(t, err)
	assert.NotEmpty(t, doc.Prose)
	assert.Len(t, doc.Shown, 1)
	assert.Empty(t, OperatorAsks(doc, keyPath))
}

// The operator follows the page, not its tags: an ask in an example block
// or in a sentence is an ask, named by its line; the age key alone, or a
// sentence that describes what the machine does, is not.
func TestAnAskInTheTextOrAnExampleIsNamed(t *testing.T) {
	head := "# Install\n\n```sh {step=switch}\nnixos-rebuild switch\n```\n\n"
	for _, c := range []struct {
		name, text string
		want       string // "" for none
	}{
		{"the age key, imperative", "Copy the age key to `/var/lib/sops-nix/key.txt` on the machine.\n", ""},
		{"the age key, by file name", "Then scp key.txt to the machine.\n", ""},
		{"what the machine does", "The switch writes the certificate to /var/lib/ci-certs/live and starts the proxy.\n", ""},
		{"no file, no secret", "Point DNS at the gateway. Nothing else is needed.\n", ""},
		{"a token pasted", "Before the switch, paste the registry token into the machine's shell.\n", "asks the operator for a token"},
		{"a file copied by the operator", "Text.\n\nThe operator must also copy `drone.env` to the machine.\n", `asks the operator for a file (drone.env)`},
		{"in a list", "- First, upload /etc/cc-ci/registry.env to the machine.\n", "asks the operator for a file (/etc/cc-ci/registry.env)"},
		{"the age key and more", "Copy the age key and the Drone OAuth secret to the machine.\n", "asks the operator for a secret"},
		{"an example block", "```sh {run=no}\nsystemctl status\nscp registry.env root@${MACHINE}:/etc/cc-ci/\n```\n", `push a file to the machine: "scp registry.env root@${MACHINE}:/etc/cc-ci/"`},
		{"an example of the age key's push", "```sh {run=no}\nscp key.txt root@${MACHINE}:/var/lib/sops-nix/key.txt\n```\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, err := Parse("docs/install.md", []byte(head+c.text), map[string]string{"MACHINE": "m"})
			require.NoError(t, err)
			asks := OperatorAsks(doc, keyPath)
			if c.want == "" {
				assert.Empty(t, asks)
				return
			}
			require.Len(t, asks, 1, "%v", asks)
			assert.Contains(t, asks[0], c.want)
			assert.True(t, strings.HasPrefix(asks[0], "docs/install.md:"), "names the line: %s", asks[0])
		})
	}
}
