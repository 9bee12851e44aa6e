package incustest_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
)

// The fake answers as Incus does for a VM whose agent starts late: Running
// at once, exec refused with Incus's words until the agent answers.
func TestAVMsAgentAnswersLate(t *testing.T) {
	f, err := incustest.New(t.TempDir())
	require.NoError(t, err)
	defer f.Close()
	f.Images["img"], f.AgentDelay, f.Projects["p"] = incustest.Image{}, 2, true
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: "vm", Project: "p", Type: incus.VirtualMachine, ImageAlias: "img"}))
	require.NoError(t, c.SetState(ctx, "p", "vm", "start", false))
	st, err := c.State(ctx, "p", "vm")
	require.NoError(t, err)
	assert.Equal(t, "Running", st.Status)
	_, err = c.Exec(ctx, "p", "vm", []string{"cat", "/etc/ssh/ssh_host_ed25519_key.pub"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "VM agent isn't currently running")
	res, err := c.Exec(ctx, "p", "vm", []string{"cat", "/etc/ssh/ssh_host_ed25519_key.pub"}, nil)
	require.NoError(t, err, "the agent answers after AgentDelay calls")
	assert.Contains(t, string(res.Stdout), "ssh-ed25519 ")
	res, err = c.Exec(ctx, "p", "vm", []string{"uname"}, nil)
	require.NoError(t, err)
	assert.Equal(t, 127, res.ExitCode, "what is not simulated says so")
	require.Error(t, c.DeleteInstance(ctx, "p", "vm"), "a running instance is not deleted")
	require.NoError(t, c.SetState(ctx, "p", "vm", "stop", true))
	require.NoError(t, c.DeleteInstance(ctx, "p", "vm"))
	_, err = c.Instance(ctx, "p", "vm")
	assert.ErrorIs(t, err, incus.ErrNotFound)
}

// The guest answers over SSH as its scripts say, `cat FILE` from its files
// (the same bytes Incus's exec reads), and anything else with exit 0 and
// no output; the harness's `bash … -c 'COMMAND'` wrapper is taken off first.
func TestTheGuestAnswersOverSSH(t *testing.T) {
	f, err := incustest.New(t.TempDir())
	require.NoError(t, err)
	defer f.Close()
	f.Images["img"], f.Projects["p"] = incustest.Image{}, true
	f.Guest = func(_, command string) (string, string, int, bool) {
		if command == "nixos-version" {
			return "25.05\n", "", 0, true
		}
		return "", "", 0, false
	}
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: "m", Project: "p", Type: incus.Container, ImageAlias: "img"}))
	require.NoError(t, c.SetState(ctx, "p", "m", "start", false))
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(key)
	require.NoError(t, err)
	f.PutFile("p", "m", "/root/.ssh/authorized_keys", incustest.File{Data: ssh.MarshalAuthorizedKey(signer.PublicKey()), Mode: 0o600})
	cl, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.SSHPort()), &ssh.ClientConfig{User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}) // a test of the fake's answers, not of pinning
	require.NoError(t, err)
	defer cl.Close()
	run := func(command string) (string, error) {
		s, err := cl.NewSession()
		require.NoError(t, err)
		defer s.Close()
		out, err := s.Output(command)
		return string(out), err
	}
	id, _, _ := f.File("p", "m", "/etc/machine-id")
	require.NotEmpty(t, id, "the guest has a machine id")
	out, err := run("bash --noprofile --norc -euo pipefail -c 'cat /etc/machine-id'")
	require.NoError(t, err)
	assert.Equal(t, string(id), out, "cat reads the guest's file")
	viaIncus, err := c.Exec(ctx, "p", "m", []string{"cat", "/etc/machine-id"}, nil)
	require.NoError(t, err)
	assert.Equal(t, out, string(viaIncus.Stdout), "the same machine both ways")
	out, err = run("nixos-version")
	require.NoError(t, err)
	assert.Equal(t, "25.05\n", out, "scripted")
	_, err = run("cat /no/such/file")
	assert.Error(t, err, "a missing file fails as cat does")
	out, err = run("systemctl is-system-running")
	assert.NoError(t, err)
	assert.Empty(t, out, "what is neither scripted nor a file exits 0 with no output")
}
