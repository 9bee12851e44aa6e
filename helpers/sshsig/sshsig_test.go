package sshsig

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/remote"
)

const ns = "ccci-review@cc-ci"

func newSigner(t *testing.T) ssh.Signer {
	s, _, err := remote.NewKey()
	require.NoError(t, err)
	return s
}

func TestSignVerifyAndEveryTamperingIsRefused(t *testing.T) {
	s := newSigner(t)
	msg := []byte("entry hash 0123")
	sig, err := Sign(s, ns, msg)
	require.NoError(t, err)
	key, err := Verify(sig, ns, msg)
	require.NoError(t, err)
	assert.Equal(t, s.PublicKey().Marshal(), key.Marshal())

	_, err = Verify(sig, ns, []byte("entry hash 0124"))
	assert.ErrorContains(t, err, "does not match the message")
	_, err = Verify(sig, "git", msg)
	assert.ErrorContains(t, err, `signed for namespace "ccci-review@cc-ci", not "git"`)
	_, err = Verify([]byte("not armoured"), ns, msg)
	assert.ErrorContains(t, err, "not an armoured SSH signature")

	// A signature made by another key over the same message is valid, but
	// that key is not allowed: trust is the allowed_signers file's.
	other, err := Sign(newSigner(t), ns, msg)
	require.NoError(t, err)
	k2, err := Verify(other, ns, msg)
	require.NoError(t, err)
	signers, err := AllowedSigners([]byte("# runner\nci@cc-ci namespaces=\"" + ns + "\" " + string(ssh.MarshalAuthorizedKey(s.PublicKey()))))
	require.NoError(t, err)
	p, ok := Allowed(signers, key, ns)
	assert.True(t, ok)
	assert.Equal(t, "ci@cc-ci", p)
	_, ok = Allowed(signers, k2, ns)
	assert.False(t, ok, "another key")
	_, ok = Allowed(signers, key, "file")
	assert.False(t, ok, "another namespace")

	compact := Compact(sig)
	back, err := Armour(compact)
	require.NoError(t, err)
	_, err = Verify(back, ns, msg)
	assert.NoError(t, err, "compact form round-trips")
}

func TestAllowedSignersRefusesWhatItDoesNotUnderstand(t *testing.T) {
	key := string(ssh.MarshalAuthorizedKey(newSigner(t).PublicKey()))
	_, err := AllowedSigners([]byte("ci cert-authority " + key))
	assert.ErrorContains(t, err, `line 1: option "cert-authority" is not supported`)
	_, err = AllowedSigners([]byte("\nci"))
	assert.ErrorContains(t, err, "line 2: no key")
}

// Interoperability with OpenSSH itself, both ways: what a reviewer runs.
func TestOpenSSHVerifiesOurSignaturesAndWeVerifyItsOwn(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen is not installed")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "runner", "-f", keyFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	pem, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	signer, err := ssh.ParsePrivateKey(pem)
	require.NoError(t, err)
	allowed := filepath.Join(dir, "allowed_signers")
	require.NoError(t, os.WriteFile(allowed, []byte("runner@ci "+string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), 0o644))
	msg := []byte("the entry's hash\n")
	msgFile := filepath.Join(dir, "msg")
	require.NoError(t, os.WriteFile(msgFile, msg, 0o644))

	verify := func(sig []byte, message []byte) error {
		sigFile := filepath.Join(dir, "sig")
		require.NoError(t, os.WriteFile(sigFile, sig, 0o644))
		cmd := exec.Command(keygen, "-Y", "verify", "-f", allowed, "-I", "runner@ci", "-n", ns, "-s", sigFile)
		cmd.Stdin = bytes.NewReader(message)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("ssh-keygen: %s", b)
		}
		return err
	}
	ours, err := Sign(signer, ns, msg)
	require.NoError(t, err)
	assert.NoError(t, verify(ours, msg), "ssh-keygen -Y verify accepts our signature")
	assert.Error(t, verify(ours, []byte("another hash\n")), "… and refuses it for another message")

	cmd := exec.Command(keygen, "-Y", "sign", "-f", keyFile, "-n", ns, msgFile)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	theirs, err := os.ReadFile(msgFile + ".sig")
	require.NoError(t, err)
	key, err := Verify(theirs, ns, msg)
	require.NoError(t, err, "we verify ssh-keygen's signature")
	assert.Equal(t, signer.PublicKey().Marshal(), key.Marshal())
}
