package labtest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTargetURLsAndTails(t *testing.T) {
	assert.Equal(t, "http://10.99.0.1:8418/drift/cc-ci.git", Target("http://10.99.0.1:8418/good/cc-ci.git", "drift"))
	assert.Equal(t, "short", Tail("short"))
	long := strings.Repeat("a", 5000) + "END"
	assert.True(t, strings.HasPrefix(Tail(long), "…"))
	assert.True(t, strings.HasSuffix(Tail(long), "END"))
}

// Without CCCI_REQUIRE_LAB a missing lab skips; the test itself runs here.
func TestAMissingLabSkipsUnlessRequired(t *testing.T) {
	t.Setenv("CCCI_REQUIRE_LAB", "")
	assert.False(t, Required())
	t.Setenv("CCCI_REQUIRE_LAB", "1")
	assert.True(t, Required())
}
