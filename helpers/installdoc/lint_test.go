package installdoc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const keyPath = "/var/lib/sops-nix/key.txt"

func doc(blocks ...string) []byte {
	s := "# install\n"
	for _, b := range blocks {
		s += "\n" + b + "\n"
	}
	return []byte(s)
}

var (
	cloneBase    = "```sh {step=clone-base}\ngit clone ${BASE_REPO_URL} /root/cc-ci\n```"
	cloneSecrets = "```sh {step=clone-secrets}\ngit clone ${SECRETS_REPO_URL} /root/cc-ci-secrets\n```"
	ageKey       = "```sh {step=provision-age-key runs=operator}\nscp key root@${MACHINE}:" + keyPath + "\n```"
	switchStep   = "```sh {step=switch}\nnixos-rebuild switch --flake /root/cc-ci#cc-ci\n```"
)

func TestLintPassesTheModelAndListsTheSteps(t *testing.T) {
	out, err := Lint("install.md", doc(cloneBase, ageKey, cloneSecrets, switchStep), values, keyPath)
	require.NoError(t, err)
	assert.Contains(t, out, "4 steps a run takes")
	assert.Contains(t, out, "1. clone-base (install.md:3)")
	assert.Contains(t, out, "git clone http://git/cc-ci.git /root/cc-ci", "placeholders filled")
	assert.Contains(t, out, "4. switch (install.md:")
}

// A document that parses but departs from the plan's model fails lint,
// naming the C-test that will object.
func TestLintReportsWhatTheCTestsWillObjectTo(t *testing.T) {
	rows := map[string]struct {
		src  []byte
		want string
	}{
		"a second operator step": {doc(cloneBase, ageKey, "```sh {step=provision-token runs=operator}\nscp t root@${MACHINE}:/t\n```", cloneSecrets, switchStep),
			`operator step "provision-token" asks for something done out of band`},
		"two switches":            {doc(cloneBase, ageKey, cloneSecrets, switchStep, "```sh {step=again}\nnixos-rebuild switch\n```"), "C7: want exactly one step that runs the switch"},
		"no secrets clone":        {doc(cloneBase, ageKey, switchStep), "C7: want exactly one step that clones ${SECRETS_REPO_URL}, found 0"},
		"key to another path":     {doc(cloneBase, "```sh {step=provision-age-key runs=operator}\nscp key root@${MACHINE}:/root/key\n```", cloneSecrets, switchStep), "provisioning the age key to " + keyPath},
		"no operator step at all": {doc(cloneBase, cloneSecrets, switchStep), `C3: the only operator step must be "provision-age-key"`},
	}
	for name, row := range rows {
		t.Run(name, func(t *testing.T) {
			_, err := Lint("install.md", row.src, values, keyPath)
			require.Error(t, err)
			var le *LintError
			assert.ErrorAs(t, err, &le, "the document's fault, not the tool's")
			assert.Contains(t, err.Error(), row.want)
		})
	}
}

func TestOnlyNixosRebuildSwitchIsTheSwitch(t *testing.T) {
	for body, want := range map[string]bool{
		"nixos-rebuild switch --flake /root/cc-ci#cc-ci":                        true,
		"nixos-rebuild --flake /root/cc-ci#cc-ci switch":                        true,
		"/run/current-system/sw/bin/nixos-rebuild \\\n  switch --flake .#cc-ci": true,
		"cd /root/cc-ci && nixos-rebuild switch":                                true,
		"/root/cc-ci/bin/switch":                                                false, // a script of the target's own
		"nixos-rebuild build --flake .#cc-ci; ./switch":                         false,
		"nixos-rebuild build && systemctl switch":                               false,
		"echo nixos-rebuild-switch":                                             false,
	} {
		assert.Equal(t, want, IsSwitch(body), "IsSwitch(%q)", body)
	}
}
