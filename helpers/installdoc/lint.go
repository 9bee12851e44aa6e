package installdoc

import (
	"context"
	"fmt"
	"strings"
)

// LintError is a document the harness would refuse or that would fail a
// C-test: every problem, each naming where it is.
type LintError struct{ Problems []string }

func (e *LintError) Error() string { return strings.Join(e.Problems, "\n") }

// Problems are what a run would object to in a parsed document before any
// machine exists: an operator step the harness cannot do (or an age key
// step that asks for more), and where it departs from the plan's model.
func Problems(doc *Doc, ageKeyPath string) []string {
	var problems []string
	can := map[string]OperatorAction{AgeKeyStep: func(context.Context) ([]Pushed, error) { return nil, nil }}
	if err := (&Runner{Operators: can, AgeKeyPath: ageKeyPath}).Check(doc); err != nil {
		problems = append(problems, err.Error())
	}
	for _, p := range ReadModel(doc, ageKeyPath).Problems(ageKeyPath) {
		problems = append(problems, doc.Path+": "+p)
	}
	return problems
}

// Lint checks a document as a run would, before any machine exists: it
// parses it (every rule, with the line), checks that the harness can do
// every operator step, and reads it against the plan's model (C3, C7). It
// returns the steps a run would take, in order, with placeholders filled
// from values.
func Lint(path string, src []byte, values map[string]string, ageKeyPath string) (string, error) {
	doc, err := Parse(path, src, values)
	if err != nil {
		return "", &LintError{Problems: []string{err.Error()}}
	}
	problems := Problems(doc, ageKeyPath)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d steps a run takes, in order (%d example blocks not run); manifest %.16s\n",
		path, len(doc.Blocks), doc.Examples, doc.Manifest)
	for i, blk := range doc.Blocks {
		who := "on the machine, in one bash -euo pipefail shell"
		if blk.Runs == Operator {
			who = "by the operator: the harness pushes the age key to " + ageKeyPath + " through Incus"
		}
		fmt.Fprintf(&b, "\n%d. %s (%s:%d) %s\n", i+1, blk.Step, path, blk.Line, who)
		for _, line := range strings.Split(strings.TrimRight(blk.Body, "\n"), "\n") {
			b.WriteString("     " + line + "\n")
		}
	}
	if len(problems) > 0 {
		return b.String(), &LintError{Problems: problems}
	}
	return b.String(), nil
}
