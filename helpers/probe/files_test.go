package probe

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAStorePathIsOneAndNotAFileInIt(t *testing.T) {
	assert.True(t, IsStorePath("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-cc-ci-system"))
	assert.False(t, IsStorePath("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-cc-ci-system/bin"))
	assert.False(t, IsStorePath("/nix/store/../etc"))
	assert.False(t, IsStorePath("/nix/store/abc-x"), "the hash part is 32 characters of Nix's base32")
}
