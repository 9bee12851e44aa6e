package gitexec

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAFailingCommandNamesItselfTheRepoAndWhatGitSaid(t *testing.T) {
	dir := t.TempDir()
	_, err := In(context.Background(), dir, "the base repo", "rev-parse", "--verify", "HEAD")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "git rev-parse --verify HEAD in the base repo: exit status 128: fatal: not a git repository")
}

func TestOutputIsBounded(t *testing.T) {
	b := &bounded{max: 4}
	n, err := b.Write([]byte("1234"))
	assert.Equal(t, 4, n)
	require.NoError(t, err)
	_, err = b.Write([]byte("5"))
	assert.ErrorIs(t, err, ErrTooLarge)
}

// git does not read the caller's global config (a hostile repo's owner
// cannot count on the operator's aliases, hooks path or credential helper).
func TestGitIgnoresTheCallersConfig(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", home)
	out, _, err := Run(context.Background(), nil, nil, "config", "--global", "--list")
	if err == nil {
		assert.Empty(t, string(out), "the global config is /dev/null")
	}
	out, _, err = Run(context.Background(), nil, nil, "config", "--show-origin", "--list")
	require.NoError(t, err)
	assert.NotContains(t, string(out), home)
}
