package installdoc

import (
	"fmt"
	"path"
	"strings"
)

// Model is install.md's steps read the way the plan's model reads
// them: clone the base, provision the age key (the one operator step), clone
// the secrets repo, one switch. C3 and C7 judge a target by it, and
// lint-install shows it to a target's author before any machine exists.
type Model struct {
	CloneBase, CloneSecrets []string // steps that clone ${BASE_REPO_URL} / ${SECRETS_REPO_URL}
	AgeKey                  []string // operator steps that provision the key to the age key path
	Operator                []string // every operator (out-of-band) step
	Switches                []string // steps that run the switch
}

// ReadInstallModel classifies the document's steps.
func ReadModel(doc *Doc, ageKeyPath string) Model {
	var m Model
	for _, b := range doc.Blocks {
		if b.Runs == Operator {
			m.Operator = append(m.Operator, b.Step)
		}
		switch {
		case b.Runs == Operator && strings.Contains(b.Raw, ageKeyPath):
			m.AgeKey = append(m.AgeKey, b.Step)
		case strings.Contains(b.Raw, "${SECRETS_REPO_URL}"):
			m.CloneSecrets = append(m.CloneSecrets, b.Step)
		case strings.Contains(b.Raw, "${BASE_REPO_URL}"):
			m.CloneBase = append(m.CloneBase, b.Step)
		}
		if IsSwitch(b.Raw) {
			m.Switches = append(m.Switches, b.Step)
		}
	}
	return m
}

// IsSwitch says whether a block runs the one switch: `nixos-rebuild`
// (by any path) with the action `switch` among its arguments, in any order
// (`nixos-rebuild --flake .#cc-ci switch` is the same command). A wrapper
// script of the target's own does not count: the plan's switch is
// nixos-rebuild's, whatever the script would run.
func IsSwitch(body string) bool {
	for _, line := range strings.Split(strings.ReplaceAll(body, "\\\n", " "), "\n") {
		rebuild := false
		for _, w := range strings.Fields(line) {
			switch {
			case w == ";" || w == "&&" || w == "||" || w == "|":
				rebuild = false
			case path.Base(w) == "nixos-rebuild":
				rebuild = true
			case rebuild && strings.TrimRight(w, ";") == "switch":
				return true
			}
		}
	}
	return false
}

// AgeKeyStep is the one operator step the harness performs in the
// operator's place (target.Operators): the only out-of-band step there may be.
const AgeKeyStep = "provision-age-key"

// Problems lists, by the C-test that will object, where the document departs
// from the model. Empty: the document follows it.
func (m Model) Problems(ageKeyPath string) []string {
	var out []string
	one := func(test string, steps []string, what string) {
		if len(steps) != 1 {
			out = append(out, fmt.Sprintf("%s: want exactly one step that %s, found %d %v", test, what, len(steps), steps))
		}
	}
	one("C7", m.CloneBase, "clones ${BASE_REPO_URL}")
	one("C7", m.CloneSecrets, "clones ${SECRETS_REPO_URL}")
	one("C7", m.AgeKey, "is an operator step provisioning the age key to "+ageKeyPath)
	one("C7", m.Switches, "runs the switch (nixos-rebuild switch)")
	if len(m.Operator) != 1 || m.Operator[0] != AgeKeyStep {
		out = append(out, fmt.Sprintf("C3: the only operator step must be %q (the age key), found %v", AgeKeyStep, m.Operator))
	}
	return out
}
