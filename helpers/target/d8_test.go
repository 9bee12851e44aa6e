package target

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestD8PartsAreLevelTwoSections(t *testing.T) {
	static, live := D8Parts("# D8\n\n## Static: closure\nbyte-identical\n\n### Live rebuild, run r1\nnot a part\n")
	assert.Contains(t, static, "byte-identical")
	assert.Contains(t, static, "### Live rebuild", "a sub-heading belongs to the section above it")
	assert.Empty(t, live, "### Live … is not a live part")

	static, live = D8Parts("## Static\nA\n## Live: throwaway\nB\n## Other\nC\n")
	assert.Equal(t, "## Static\nA\n", static)
	assert.Equal(t, "## Live: throwaway\nB\n", live)
}

// A claim Markdown reflowed — split over lines, extra spaces, a tab, emphasis
// — is still the claim.
func TestContainsPhraseSeesThroughReflow(t *testing.T) {
	for _, text := range []string{
		"It is infeasible by design.",
		"It is INFEASIBLE\nby design.",
		"It is infeasible  by\tdesign.",
		"It is *infeasible* by _design_.",
		"It is infeasible\n   by design.",
		// What does not render hides nothing.
		"It is infeasible&nbsp;by design.",
		"It is infeasible\u00a0by design.",
		"It is infeas\u200bible by de\u00adsign.",
		"It is infeasible <!-- reviewed --> by design.",
		"It is infea<!--\nreviewed\n-->sible by design.",
		"It is infeasible <span>by</span> design.",
		"It is infeasible&#32;by&#8203; design.",
		"It is infea\ufeffsible by design.",
	} {
		assert.True(t, ContainsPhrase(text, "infeasible by design"), "%q", text)
	}
	assert.False(t, ContainsPhrase("feasible, by design", "infeasible by design"))
	assert.False(t, ContainsPhrase("infeasible for now, by design of the gateway", "infeasible by design"))
	assert.False(t, ContainsPhrase("anything", "  "), "an empty phrase matches nothing")
}
