package target

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
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

// Over SSH a stranger presents a key registered nowhere: a server that
// lets any key read the repo (a forge's public repo) is caught; one that
// reads it to its deploy keys only refuses. A client with no key at all is
// refused at the door by every SSH server, so it would prove nothing.
func TestAnonymousReadOverSSHIsAStrangersKey(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
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
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte("[127.0.0.1]:"+port+" "+string(ssh.MarshalAuthorizedKey(host.PublicKey()))), 0o644))
	url := "ssh://git@127.0.0.1:" + port + "/lab/s.git"

	refused, answer, err := AnonymousRead(context.Background(), url, knownHosts)
	require.NoError(t, err)
	assert.True(t, refused, "read to its deploy keys only: %s", answer)

	require.NoError(t, os.Remove(filepath.Join(bare, "token"))) // public now
	refused, answer, err = AnonymousRead(context.Background(), url, knownHosts)
	require.NoError(t, err)
	assert.False(t, refused, "a repo any key reads is public: %s", answer)

	_, _, err = AnonymousRead(context.Background(), url, filepath.Join(t.TempDir(), "empty"))
	assert.ErrorContains(t, err, "host key")
}
