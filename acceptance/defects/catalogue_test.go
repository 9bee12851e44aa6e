package defects

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/fixtures"
)

// fixtures/README.md's table of broken targets is the matrix as a reader
// sees it: the same rows, each naming the C-tests the matrix says it fails
// and those it says skip. (No lab needed: it reads the two texts.)
func TestTheReadmeTableIsTheMatrix(t *testing.T) {
	b, err := os.ReadFile("../../fixtures/README.md")
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(b), "| target | the defect | must fail (cause in the message) |")
	require.True(t, ok, "fixtures/README.md has the table of broken targets")
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9-]+)`(?: \\(host\\))? \\| [^\\n]*\\| ([^\\n]*) \\|$")
	quoted := regexp.MustCompile("`[^`]*`")
	cNumber := regexp.MustCompile(`\bC[1-7]\b|the blank-machine test`)
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.SplitN(table, "\n\n", 2)[0], "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name, cell := m[1], m[2]
		seen[name] = true
		want, ok := matrix[name]
		if !assert.True(t, ok, "fixtures/README.md lists %s, which has no row in the matrix", name) {
			continue
		}
		failing, skipping, _ := strings.Cut(cell, "; skip ")
		failing = parens(quoted.ReplaceAllString(failing, ""))
		readFail, readSkip := cNumber.FindAllString(failing, -1), cNumber.FindAllString(skipping, -1)
		mustFail, mustSkip := want.Split()
		wantFail, wantSkip := shortForReadme(mustFail), shortForReadme(mustSkip)
		assert.Equal(t, set(wantFail), set(readFail), "%s: the C-tests fixtures/README.md says fail", name)
		assert.Equal(t, set(wantSkip), set(readSkip), "%s: the C-tests fixtures/README.md says skip", name)
	}
	require.Greater(t, len(seen), len(matrix)/2, "the table's rows were read")
	for name := range matrix {
		if !slices.Contains(fixtures.Flavours(), name) { // the flavours have a table of their own
			assert.True(t, seen[name], "the matrix row %s is not in fixtures/README.md's table", name)
		}
	}
}

// shortForReadme names tests as the table does: C3, or the blank-machine test.
func shortForReadme(tests []string) []string {
	var out []string
	for _, test := range tests {
		if strings.HasPrefix(test, "TestC") {
			out = append(out, test[4:6])
		} else {
			out = append(out, "the blank-machine test")
		}
	}
	return out
}

// parens drops parenthesised text (one level, as the table writes it).
func parens(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// set sorts and de-duplicates.
func set(s []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(append([]string{}, s...))))
}
