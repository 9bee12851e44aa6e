package gitserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/fetchlog"
	"golang.org/x/crypto/ssh"
)

// keyPair writes an OpenSSH private key file and returns its public key.
func keyPair(t *testing.T, dir, name string) (ssh.PublicKey, string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	file := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(blk), 0o600))
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return signer.PublicKey(), file
}

func TestSSHServesARepoToItsDeployKeysOnly(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
	}
	root, keys := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "good"), 0o755))
	bareRepo(t, root, "good/cc-ci-secrets.git")
	bareRepo(t, root, "good/cc-ci.git") // no deploy keys: not served over ssh

	deploy, deployFile := keyPair(t, keys, "deploy")
	_, strangerFile := keyPair(t, keys, "stranger")
	other, otherFile := keyPair(t, keys, "other") // a deploy key of another repo: known to the server
	require.NoError(t, os.WriteFile(filepath.Join(root, "good/cc-ci-secrets.git/ccci-deploy-keys"), ssh.MarshalAuthorizedKey(deploy), 0o644))
	bareRepo(t, root, "tools/site.git")
	require.NoError(t, os.WriteFile(filepath.Join(root, "tools/site.git/ccci-deploy-keys"), ssh.MarshalAuthorizedKey(other), 0o644))
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	host, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	logPath := filepath.Join(t.TempDir(), "fetches.jsonl")
	fetches, err := fetchlog.Open(logPath)
	require.NoError(t, err)
	start := time.Now()
	srv := &SSHServer{Root: root, DeployKeysFile: "ccci-deploy-keys", HostKey: host, Log: t.Logf, Fetches: fetches}
	go func() { _ = srv.Serve(l) }()
	port := l.Addr().(*net.TCPAddr).Port
	knownHosts := filepath.Join(keys, "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte("[127.0.0.1]:"+itoa(port)+" "+string(ssh.MarshalAuthorizedKey(host.PublicKey()))), 0o644))

	clone := func(keyFile, repo, into string) (string, error) {
		cmd := exec.Command("git", "clone", "-q", "ssh://git@127.0.0.1:"+itoa(port)+"/"+repo, into)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "HOME="+cmd.Dir,
			"GIT_SSH_COMMAND=ssh -F /dev/null -i "+keyFile+" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+knownHosts)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := clone(deployFile, "good/cc-ci-secrets.git", "ok")
	require.NoError(t, err, out)

	entries, err := fetchlog.Read(logPath, start)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the fetch is recorded")
	assert.Equal(t, fetchlog.Entry{Time: entries[0].Time, Remote: "127.0.0.1", Protocol: "ssh", Repo: "good/cc-ci-secrets.git"}, entries[0])

	out, err = clone(strangerFile, "good/cc-ci-secrets.git", "stranger")
	require.Error(t, err, "a key registered nowhere is refused at the door, as a forge refuses it")
	assert.Contains(t, out, "Permission denied (publickey)")
	out, err = clone(otherFile, "good/cc-ci-secrets.git", "other")
	require.Error(t, err, "another repo's key must be refused")
	assert.Contains(t, out, "may not read")

	out, err = clone("/dev/null", "good/cc-ci-secrets.git", "anonymous")
	require.Error(t, err, "no key, no read: %s", out)

	// Public (no token file, as the HTTP server judges it): any key the
	// server knows reads it; a stranger is still refused at the door.
	srv.TokenFile = "ccci-token"
	require.NoError(t, os.WriteFile(filepath.Join(root, "good/cc-ci-secrets.git/ccci-token"), []byte("t\n"), 0o600))
	out, err = clone(otherFile, "good/cc-ci-secrets.git", "other-again")
	require.Error(t, err, "a private repo is read by its deploy keys only")
	assert.Contains(t, out, "may not read")
	require.NoError(t, os.Remove(filepath.Join(root, "good/cc-ci-secrets.git/ccci-token")))
	out, err = clone(otherFile, "good/cc-ci-secrets.git", "other-public")
	require.NoError(t, err, "a public repo is read by any key the server knows: %s", out)
	out, err = clone(strangerFile, "good/cc-ci-secrets.git", "stranger-public")
	require.Error(t, err, "a stranger learns nothing over ssh, public repo or not: %s", out)
	assert.Contains(t, out, "Permission denied (publickey)")
	out, err = clone("/dev/null", "good/cc-ci-secrets.git", "anonymous-public")
	require.Error(t, err, "still no key, no read: %s", out)

	out, err = clone(deployFile, "good/cc-ci.git", "public")
	require.Error(t, err, "a repo without deploy keys is not served over ssh")
	assert.Contains(t, out, "readable over ssh")

	// A path is cleaned inside the root first, as the HTTP server does: no way out of it.
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(root), "ccci-deploy-keys"), ssh.MarshalAuthorizedKey(deploy), 0o644))
	out, err = clone(deployFile, "../"+filepath.Base(root)+".git", "out")
	require.Error(t, err, out)
	assert.Contains(t, out, "readable over ssh")

	cmd := exec.Command("ssh", "-F", "/dev/null", "-i", deployFile, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+knownHosts, "-p", itoa(port), "git@127.0.0.1", "git-receive-pack '/good/cc-ci-secrets.git'")
	b, err := cmd.CombinedOutput()
	require.Error(t, err, "read-only: a push is refused")
	assert.Contains(t, string(b), "only git-upload-pack")
}

func itoa(n int) string { return strconv.Itoa(n) }
