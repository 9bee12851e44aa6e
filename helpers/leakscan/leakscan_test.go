package leakscan

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "hmac-0123456789abcdef"

func TestEveryVariantIsFound(t *testing.T) {
	needles := Needles(map[string]string{"webhook_hmac": secret})
	for shift := 0; shift < 3; shift++ {
		blob := base64.StdEncoding.EncodeToString(append([]byte("xyz"[:shift]), []byte(secret+"trailing")...))
		got := Data("blob", []byte("prefix "+blob+" suffix"), needles)
		require.NotEmpty(t, got, "base64 at offset %d", shift)
		assert.Equal(t, "webhook_hmac", got[0].Secret)
	}
	assert.NotEmpty(t, Data("raw", []byte("a "+secret+" b"), needles))
	assert.NotEmpty(t, Data("hex", []byte(hex.EncodeToString([]byte(secret))), needles))
	assert.Empty(t, Data("clean", []byte("nothing to see here, hmac-0123 only"), needles))
}

func TestMultiLineSecretsAreSearchedByLine(t *testing.T) {
	needles := Needles(map[string]string{"key": "-----BEGIN X-----\nAAAABBBBCCCCDDDD\nEEEEFFFFGGGGHHHH\n-----END X-----\n"})
	got := Data("f", []byte("EEEEFFFFGGGGHHHH\r\n"), needles)
	require.NotEmpty(t, got)
	for _, n := range needles {
		assert.NotContains(t, string(n.Bytes), "-----", "the PEM armour is not a secret")
	}
}

// A secret committed and then removed is still in the object store.
func TestGitHistoryIsSearched(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	git("init", "-q")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "leak.env"), []byte("SECRET="+secret+"\n"), 0o644))
	git("add", ".")
	git("commit", "-qm", "oops")
	require.NoError(t, os.Remove(filepath.Join(dir, "leak.env")))
	git("add", "-A")
	git("commit", "-qm", "remove")
	got, err := GitObjects(context.Background(), dir, Needles(map[string]string{"webhook_hmac": secret}))
	require.NoError(t, err)
	require.NotEmpty(t, got)
	assert.Contains(t, got[0].Where, "git object ")
	assert.NotContains(t, got[0].String(), secret, "a finding never carries the secret")
}
