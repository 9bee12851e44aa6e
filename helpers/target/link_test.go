package target

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/sopsfile"
)

const secretsRev = "739247ab087447fe65117b45f6252df9a7fad789"

// A lock as Nix writes it for a nested `inputs = { secrets = { … }; … }`
// flake.nix (the syntax does not matter: the lock is read), with a
// nixpkgs input and a follows.
const nestedLock = `{"nodes": {
  "nixpkgs": {"locked": {"type": "github", "owner": "NixOS", "repo": "nixpkgs", "rev": "0000000000000000000000000000000000000001", "narHash": "sha256-a"}},
  "sops-nix": {"inputs": {"nixpkgs": ["nixpkgs"]}, "locked": {"type": "github", "owner": "Mic92", "repo": "sops-nix", "rev": "0000000000000000000000000000000000000002", "narHash": "sha256-b"}},
  "cc-ci-secrets": {"locked": {"type": "git", "url": "ssh://git@git.coopcloud.tech/cc-ci/cc-ci-secrets.git", "rev": "` + secretsRev + `", "narHash": "sha256-c"}},
  "root": {"inputs": {"nixpkgs": "nixpkgs", "sops-nix": "sops-nix", "private": "cc-ci-secrets"}}
}, "root": "root", "version": 7}`

func baseRepo(t *testing.T, files map[string]string, gitlinks map[string]string) *Repos {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) {
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	git("init", "-q")
	for p, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644))
		git("add", p)
	}
	for p, rev := range gitlinks {
		git("update-index", "--add", "--cacheinfo", "160000,"+rev+","+p)
	}
	git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
	head, err := gitOut(context.Background(), dir, "rev-parse", "HEAD")
	require.NoError(t, err)
	return &Repos{Base: dir, BaseCommit: head}
}

func TestTheSecretsRepoIsFoundHoweverTheBasePinsIt(t *testing.T) {
	const secretsURL = "https://git.coopcloud.tech/cc-ci/cc-ci-secrets"
	t.Run("a flake input, by its URL under another name and scheme", func(t *testing.T) {
		links, err := SecretsLinks(baseRepo(t, map[string]string{"flake.lock": nestedLock}, nil), secretsURL)
		require.NoError(t, err)
		require.Len(t, links, 1)
		assert.Equal(t, SecretsLink{Kind: "flake input", Name: "private", Where: "flake.lock",
			URL: "ssh://git@git.coopcloud.tech/cc-ci/cc-ci-secrets.git", Rev: secretsRev, NarHash: "sha256-c"}, links[0])
	})
	t.Run("a flake input named secrets, overridden to a local clone", func(t *testing.T) {
		lock := `{"nodes": {"secrets": {"locked": {"type": "git", "url": "file:///root/cc-ci-secrets", "rev": "` + secretsRev + `", "narHash": "sha256-d"}},
		  "root": {"inputs": {"secrets": "secrets"}}}, "root": "root", "version": 7}`
		links, err := SecretsLinks(baseRepo(t, map[string]string{"flake.lock": lock}, nil), secretsURL)
		require.NoError(t, err)
		require.Len(t, links, 1)
		assert.Equal(t, "secrets", links[0].Name)
	})
	t.Run("a git submodule", func(t *testing.T) {
		mods := "[submodule \"secrets\"]\n\tpath = secrets\n\turl = git@unused:x\n[submodule \"private\"]\n\tpath = ops/secrets\n\turl = https://ci:token@git.coopcloud.tech/cc-ci/cc-ci-secrets.git/\n"
		links, err := SecretsLinks(baseRepo(t, map[string]string{".gitmodules": mods}, map[string]string{"ops/secrets": secretsRev}), secretsURL)
		require.NoError(t, err)
		require.Len(t, links, 1)
		assert.Equal(t, "git submodule", links[0].Kind)
		assert.Equal(t, "ops/secrets", links[0].Name)
		assert.Equal(t, secretsRev, links[0].Rev, "the gitlink's commit")
	})
	t.Run("neither", func(t *testing.T) {
		links, err := SecretsLinks(baseRepo(t, map[string]string{"README": "x"}, nil), secretsURL)
		require.NoError(t, err)
		assert.Empty(t, links)
	})
	t.Run("a broken lock is an error naming it", func(t *testing.T) {
		_, err := SecretsLinks(baseRepo(t, map[string]string{"flake.lock": `{"root": "root", "nodes": {}}`}, nil), secretsURL)
		assert.ErrorContains(t, err, `flake.lock: the root node "root"`)
	})
}

// A parameter is where the base sets it in plain text, in any file; a sops
// file's metadata naming a recipient does not make it one.
func TestPlainParametersAreFoundInAnyCommittedFile(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	enc, err := sopsfile.Encrypt([]byte("token: a-secret-value-0123\n"), []string{id.Recipient().String()})
	require.NoError(t, err)
	rp := baseRepo(t, map[string]string{
		"hosts.nix":          "{ DOMAIN = \"ci.commoninternet.net\"; }\n",
		"access.sops.yaml":   string(enc),
		"README.md":          "cc-ci\n",
		"nested-params.json": `{"domain": "ci.commoninternet.net"}`,
	}, nil)
	files, err := PlainIn(rp, "ci.commoninternet.net")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"hosts.nix", "nested-params.json"}, files)
	files, err = PlainIn(rp, id.Recipient().String())
	require.NoError(t, err)
	assert.Empty(t, files, "the recipient is only in a sops file's metadata")
	files, err = PlainIn(rp, "not-there.example")
	require.NoError(t, err)
	assert.Empty(t, files)
}
