package target

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/gitserver"
)

// Over SSH a stranger presents a key registered nowhere, and a forge
// refuses it at the door whether the repo is public or not (the lab's git
// server does as Gitea does): the refusal proves nothing. Privacy is judged
// where the forge serves anonymous readers — its HTTPS address of the repo,
// or CCCI_SECRETS_ANONYMOUS_URL — and only "none" lets the SSH refusal
// stand alone. Before, a public repo pinned by an SSH URL passed.
func TestAnonymousReadOverSSHIsJudgedWhereTheForgeServesStrangers(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
	}
	if _, err := os.Stat(gitserver.DefaultBackend); err != nil {
		t.Skip("no git-http-backend")
	}
	root := t.TempDir()
	repo := committed(t, map[string]string{"README": "secrets\n"}, nil)
	bare := filepath.Join(root, "lab", "s.git")
	out, err := exec.Command("git", "clone", "-q", "--bare", repo.Base, bare).CombinedOutput()
	require.NoError(t, err, "%s", out)
	deploy, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bare, "deploy-keys"), ssh.MarshalAuthorizedKey(deploy), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(bare, "token"), []byte("t\n"), 0o600))
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	host, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		_ = (&gitserver.SSHServer{Root: root, DeployKeysFile: "deploy-keys", TokenFile: "token", HostKey: host, Log: t.Logf}).Serve(l)
	}()
	web := httptest.NewServer(&gitserver.Server{Root: root, TokenFile: "token", Log: t.Logf})
	defer web.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte("[127.0.0.1]:"+port+" "+string(ssh.MarshalAuthorizedKey(host.PublicKey()))), 0o644))
	a := Anonymous{URL: "ssh://git@127.0.0.1:" + port + "/lab/s.git", Web: web.URL + "/lab/s.git", KnownHosts: knownHosts}

	refused, answer, err := AnonymousRead(context.Background(), a)
	require.NoError(t, err)
	assert.True(t, refused, "private: %s", answer)
	assert.Contains(t, answer, "401")

	require.NoError(t, os.Remove(filepath.Join(bare, "token"))) // public now
	refused, answer, err = AnonymousRead(context.Background(), a)
	require.NoError(t, err)
	assert.False(t, refused, "public to anonymous readers, though SSH refused the stranger: %s", answer)
	assert.Contains(t, answer, "Permission denied (publickey)", "the stranger was refused over SSH all the same")

	none := a
	none.Web = "none"
	refused, answer, err = AnonymousRead(context.Background(), none)
	require.NoError(t, err)
	assert.True(t, refused, "none: the operator says SSH is the only channel")
	assert.Contains(t, answer, "CCCI_SECRETS_ANONYMOUS_URL=none")

	derived := a
	derived.Web = "" // https://127.0.0.1/lab/s.git: nothing serves it here
	_, _, err = AnonymousRead(context.Background(), derived)
	assert.ErrorContains(t, err, "set CCCI_SECRETS_ANONYMOUS_URL")

	a.KnownHosts = filepath.Join(t.TempDir(), "empty")
	_, _, err = AnonymousRead(context.Background(), a)
	assert.ErrorContains(t, err, "host key")
}

func TestTheHTTPSFormOfAnSSHURL(t *testing.T) {
	for in, want := range map[string]string{
		"ssh://git@git.autonomic.zone/recipe-maintainers/cc-ci-secrets.git": "https://git.autonomic.zone/recipe-maintainers/cc-ci-secrets.git",
		"ssh://git@git.example:2222/o/r.git":                                "https://git.example/o/r.git",
		"git@git.example:o/r.git":                                           "https://git.example/o/r.git",
		"git.example:/o/r":                                                  "https://git.example/o/r",
	} {
		got, err := httpsForm(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := httpsForm("file:///srv/r.git")
	assert.ErrorContains(t, err, "CCCI_SECRETS_ANONYMOUS_URL")
}
