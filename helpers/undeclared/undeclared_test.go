package undeclared

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A repo whose history once held a bot token (removed in the next commit)
// and a committed private key; a declared secret's and a public value's
// fingerprints are set aside.
func TestSecretShapedMaterialIsFoundInAllHistory(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	write := func(p, s string) { require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644)) }
	token := "kX9fQ2mZ7vR4tL8wP3nB6yH1jD5sA0cE"
	declared := "Zq8vN3xR7mK2pL9wT4bY6cH1"
	git("init", "-q")
	write("bridge.sh", "#!/bin/sh\nset -eu\nBOT_API_TOKEN=\""+token+"\"\nDRONE_RPC_SECRET=\""+declared+"\"\n")
	git("add", ".")
	git("commit", "-qm", "one")
	write("bridge.sh", "#!/bin/sh\nset -eu\n")
	git("commit", "-qam", "two: the token removed, still in history")

	found, err := Git(context.Background(), "base", filepath.Join(dir, ".git"), map[string]bool{Fingerprint(declared): true})
	require.NoError(t, err)
	require.Len(t, found, 1, "%v", found)
	f := found[0]
	assert.Equal(t, "bridge.sh", f.Path)
	assert.Equal(t, 3, f.Line)
	assert.Equal(t, "generic-api-key", f.Rule)
	assert.Equal(t, Fingerprint(token), f.Fingerprint)
	assert.NotContains(t, f.String(), token, "a finding names a fingerprint, never the material")
	assert.True(t, strings.HasPrefix(f.String(), "base repo bridge.sh (object "), f.String())

	none, err := InRepos(context.Background(), filepath.Join(dir, ".git"), filepath.Join(dir, ".git"),
		map[string]string{"drone_rpc_secret": declared}, []string{strings.ToUpper(Fingerprint(token))})
	require.NoError(t, err)
	assert.Empty(t, none, "declared public by its fingerprint")
}

// Rules is what gitleaks reports on a text, by rule: a keyed token, not
// prose, and not a token its generic rule lets through by a stopword.
func TestRulesNameWhatGitleaksReportsOnAText(t *testing.T) {
	ids, err := Rules("modules/bridge.sh", `BOT_API_TOKEN="Q7vX2mK9pL4rT8wZ3nB6cF1hJ5dG0sYe"`+"\n")
	require.NoError(t, err)
	assert.Equal(t, []string{"generic-api-key"}, ids)
	ids, err = Rules("README.md", "the bridge posts to the chat bot\n")
	require.NoError(t, err)
	assert.Empty(t, ids)
	ids, err = Rules("modules/bridge.sh", `BOT_API_TOKEN="Q7vX2mK9pL4rT8wZajaxcF1hJ5dG0sYe"`+"\n") // "ajax", a stopword
	require.NoError(t, err)
	assert.Empty(t, ids)
}
