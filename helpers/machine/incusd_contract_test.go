package machine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// What a first run on the real host meets that the lab does not, each as
// incusd answers it (the fake cites the incusd source for each), and how
// the machine code copes — for a container and for a VM where both apply.

var bothTypes = []string{incus.Container, incus.VirtualMachine}

// A NixOS guest has its commands in /run/current-system/sw/bin only, which
// incusd puts on exec's PATH for containers but not for VMs: the host key is
// still read, because commands run through /bin/sh with that PATH.
func TestANixOSGuestsCommandsAreFoundOnEitherType(t *testing.T) {
	for _, typ := range bothTypes {
		t.Run(typ, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{NixOS: true})
			mc, err := m.Create(context.Background(), spec(typ, machine.KeyViaFile))
			require.NoError(t, err, "the host key is read with cat from /run/current-system/sw/bin")
			assert.NotNil(t, mc.HostKey)
			require.NoError(t, m.DestroyAll(context.Background()))
			_, _, exists := f.Instance(project, mc.Name)
			assert.False(t, exists)
		})
	}
}

// incusd sets a pushed file's mode and owner only when it creates the file.
// An image that already has root's authorized_keys (another key, mode 0644,
// another owner) ends up with the run's key only, 0600, root's.
func TestAnExistingAuthorizedKeysIsReplacedNotMerged(t *testing.T) {
	for _, typ := range bothTypes {
		t.Run(typ, func(t *testing.T) {
			img := incustest.Image{Files: map[string]incustest.File{
				"/root/.ssh/":                {Mode: 0o755},
				"/root/.ssh/authorized_keys": {Mode: 0o644, UID: 1000, Data: []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImage image@build\n")},
			}}
			f, m := newFake(t, img)
			mc, err := m.Create(context.Background(), spec(typ, machine.KeyViaFile))
			require.NoError(t, err)
			keys, mode, ok := f.File(project, mc.Name, "/root/.ssh/authorized_keys")
			require.True(t, ok)
			assert.Equal(t, string(ssh.MarshalAuthorizedKey(mc.Signer.PublicKey())), string(keys), "only the run's key")
			assert.Equal(t, 0o600, mode, "the mode the harness asked for, not the image's")
			require.NoError(t, m.DestroyAll(context.Background()))
		})
	}
}

// A /root/.ssh others may write cannot be fixed through Incus (an existing
// directory keeps its mode); sshd would refuse the key, so the harness
// stops at once, naming the path and mode, and destroys the machine.
func TestAWorldWritableSSHDirectoryIsNamed(t *testing.T) {
	for _, typ := range bothTypes {
		t.Run(typ, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{Files: map[string]incustest.File{"/root/.ssh/": {Mode: 0o777}}})
			start := time.Now()
			mc, err := m.Create(context.Background(), spec(typ, machine.KeyViaFile))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "/root/.ssh on "+mc.Name+" is mode 0777")
			assert.Less(t, time.Since(start), 5*time.Second, "not retried until the boot timeout")
			require.NoError(t, m.DestroyAll(context.Background()))
			_, _, exists := f.Instance(project, mc.Name)
			assert.False(t, exists)
		})
	}
}

// An image of the other type is refused by incusd at creation, in its words.
func TestAnImageOfTheOtherTypeIsRefusedAtCreation(t *testing.T) {
	for _, typ := range bothTypes {
		t.Run(typ, func(t *testing.T) {
			other := map[string]string{incus.Container: incus.VirtualMachine, incus.VirtualMachine: incus.Container}[typ]
			_, m := newFake(t, incustest.Image{Type: other})
			_, err := m.Create(context.Background(), spec(typ, machine.KeyViaFile))
			require.Error(t, err)
			assert.Contains(t, err.Error(), `Requested image's type "`+other+`" doesn't match instance type "`+typ+`"`)
			require.NoError(t, m.DestroyAll(context.Background()))
		})
	}
}

// An image that declares requirements.secureboot=false: incusd refuses to
// start a VM from it unless security.secureboot=false; the harness sets it.
func TestAnImageThatDeclaresNoSecureBoot(t *testing.T) {
	for _, c := range []struct {
		secureBoot string
		ok         bool
	}{{"false", true}, {"true", false}, {"profile", false}} {
		t.Run("security.secureboot="+c.secureBoot, func(t *testing.T) {
			_, m := newFake(t, incustest.Image{DeclaresSecureBootOff: true})
			s := spec(incus.VirtualMachine, machine.KeyViaFile)
			s.SecureBoot = c.secureBoot
			_, err := m.Create(context.Background(), s)
			if c.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "incompatible with secureboot. Please set security.secureboot=false on the instance")
			}
			require.NoError(t, m.DestroyAll(context.Background()))
		})
	}
}

// A NIC whose MAC a profile fixes has no volatile.<nic>.hwaddr; the address
// is still the NIC's (by the device's hwaddr), never docker0's, which sorts
// first by name on a VM.
func TestAStaticMACInTheProfileStillPicksTheNIC(t *testing.T) {
	for _, typ := range bothTypes {
		t.Run(typ, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{})
			f.StaticMAC = "00:16:3e:aa:bb:cc"
			mc, err := m.Create(context.Background(), spec(typ, machine.KeyViaFile))
			require.NoError(t, err)
			_, cfg, _ := f.Instance(project, mc.Name)
			assert.NotContains(t, cfg, "volatile.eth0.hwaddr", "incusd writes none for a fixed hwaddr")
			assert.Equal(t, "127.0.0.1", mc.IP, "the NIC's address, not docker0's 172.17.0.1")
			require.NoError(t, m.DestroyAll(context.Background()))
		})
	}
}

// security.protection.delete from a profile: incusd's delete operation fails.
// Teardown says so at once, naming the instance and how to remove it; it
// does not retry for minutes or pass silently.
func TestAProtectedInstanceIsReportedByNameAtTeardown(t *testing.T) {
	for _, typ := range bothTypes {
		t.Run(typ, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{})
			f.Profile["security.protection.delete"] = "true"
			mc, err := m.Create(context.Background(), spec(typ, machine.KeyViaFile))
			require.NoError(t, err)
			start := time.Now()
			err = m.DestroyAll(context.Background())
			require.Error(t, err)
			var protected *machine.ProtectedError
			require.ErrorAs(t, err, &protected)
			assert.Contains(t, err.Error(), project+"/"+mc.Name)
			assert.Contains(t, err.Error(), "LEFT BEHIND")
			assert.Less(t, time.Since(start), 10*time.Second)
			status, _, exists := f.Instance(project, mc.Name)
			assert.True(t, exists)
			assert.Equal(t, "Stopped", status, "stopped: it holds no RAM")
		})
	}
}

// The answers themselves, through the client: the shapes the machine code
// above relies on.
func TestTheFakeAnswersAsIncusdDoes(t *testing.T) {
	ctx := context.Background()
	f, m := newFake(t, incustest.Image{})
	c := m.Client
	for _, typ := range bothTypes {
		name := "probe-" + strings.Split(typ, "-")[0]
		require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: name, Project: project, Type: typ, ImageAlias: "incus-base"}))
		require.NoError(t, c.SetState(ctx, project, name, "start", false))
	}
	f.AgentNever = true
	_, err := c.Exec(ctx, project, "probe-virtual", []string{"cat", "/etc/hostname"}, nil)
	require.True(t, incus.IsOperationFailure(err), "exec before the agent: accepted, then the operation fails: %v", err)
	assert.Contains(t, err.Error(), "VM agent isn't currently running")
	f.AgentNever = false

	err = c.DeleteInstance(ctx, project, "probe-container")
	var ie *incus.Error
	require.ErrorAs(t, err, &ie, "deleting a running instance is refused before any operation")
	assert.Equal(t, 400, ie.StatusCode)
	assert.Contains(t, ie.Message, "Instance is running")

	for _, typ := range bothTypes {
		name := "probe-" + strings.Split(typ, "-")[0]
		require.NoError(t, c.SetState(ctx, project, name, "stop", true))
		_, err := c.StatFile(ctx, project, name, "/etc/ssh/ssh_host_ed25519_key.pub")
		if typ == incus.VirtualMachine {
			require.ErrorAs(t, err, &ie, "a stopped VM's files are behind its agent")
			assert.Equal(t, 500, ie.StatusCode)
			assert.Contains(t, ie.Message, "Instance is not running")
		} else {
			require.NoError(t, err, "a stopped container's files are reached from the host")
		}
		_, err = c.Exec(ctx, project, name, []string{"true"}, nil)
		require.ErrorAs(t, err, &ie, "exec on a stopped instance")
		assert.Equal(t, 400, ie.StatusCode)
		require.NoError(t, c.DeleteInstance(ctx, project, name))
	}
}

// With a restricted client certificate incusd filters the all-projects
// listing instead of refusing it: the other tenants' RAM is silently not in
// the sum. The guardrail knows who it is, refuses a partial sum, and counts
// what the operator states for the projects it cannot see.
func TestARestrictedCertificatesPartialSumIsNotBelieved(t *testing.T) {
	ctx := context.Background()
	f, m := newFake(t, incustest.Image{})
	f.Projects["lichen"] = true
	require.NoError(t, m.Client.CreateInstance(ctx, incus.InstanceSpec{Name: "tenant", Project: "lichen", Type: incus.Container,
		ImageAlias: "incus-base", Config: map[string]string{"limits.memory": "8GiB"}}))
	require.NoError(t, m.Client.SetState(ctx, "lichen", "tenant", "start", false))
	f.Restricted = []string{project}

	_, err := m.Create(ctx, spec(incus.Container, machine.KeyViaFile))
	var refused *machine.GuardrailError
	require.ErrorAs(t, err, &refused, "4GiB 'fits' a sum that leaves the other tenant's 8GiB out")
	assert.Contains(t, err.Error(), "PARTIAL")
	assert.Contains(t, err.Error(), "restricted to projects [terraform-ci]")
	assert.Contains(t, err.Error(), "CCCI_OTHER_TENANTS_RAM")
	assert.Empty(t, m.Created(), "nothing created")

	m.Guard.OtherTenantsRAM, m.Guard.OtherTenantsStated = 9<<30, true
	_, err = m.Create(ctx, spec(incus.Container, machine.KeyViaFile))
	require.ErrorAs(t, err, &refused, "4GiB + the stated 9GiB > 12GiB")
	assert.Contains(t, err.Error(), "13GiB > cap 12GiB")

	m.Guard.OtherTenantsRAM = 8 << 30
	mc, err := m.Create(ctx, spec(incus.Container, machine.KeyViaFile))
	require.NoError(t, err, "4GiB + the stated 8GiB fits 12GiB")
	require.NoError(t, m.DestroyAll(ctx))
	_, _, exists := f.Instance(project, mc.Name)
	assert.False(t, exists)
}
