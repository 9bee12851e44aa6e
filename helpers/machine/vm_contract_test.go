package machine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/redact"
)

// The real host's throwaways are virtual machines; the lab's are containers
// (no usable KVM here). These contract tests run the same lifecycle code —
// guardrails, labels, uuid, host-key pinning, key push, SSH, teardown —
// against incustest, a fake answering as Incus's REST API does for each
// type, so that no path that only a VM takes goes untested:
//
//   - readiness: a VM is Running long before its agent answers; exec and
//     file calls fail with "VM agent isn't currently running" until then;
//   - addresses: a VM's interfaces are named by its agent (enp5s0), or after
//     the Incus device before it; the guest has other interfaces (docker0);
//   - security.secureboot: an unsigned image (NixOS) never boots with it on;
//   - the SSH key: by the file API (nothing asked of the image), a template
//     or cloud-init;
//   - boot time: every wait is bounded by the boot timeout, and a machine
//     that never becomes ready is destroyed.

const project = "terraform-ci"

func newFake(t *testing.T, img incustest.Image) (*incustest.Server, *machine.Manager) {
	t.Helper()
	f, err := incustest.New(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(f.Close)
	f.Images["incus-base"] = img
	f.Projects[project] = true
	return fakeManager(t, f)
}

// fakeManager is a fresh run's manager on f.
func fakeManager(t *testing.T, f *incustest.Server) (*incustest.Server, *machine.Manager) {
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	m := &machine.Manager{Client: c, Labels: machine.Labels{Prefix: "ccci"}, RunID: machine.NewRunID(time.Now()),
		Redact: &redact.Redactor{}, SSHPort: f.SSHPort(), Log: t.Logf,
		Guard: config.Guardrails{AllowedProjects: []string{project}, RAMCap: 12 << 30, DefaultInstanceMemory: 1 << 30, MaxMachines: 1, LabelPrefix: "ccci"}}
	return f, m
}

func spec(typ, keyVia string) machine.Spec {
	return machine.Spec{MachineSettings: config.MachineSettings{Project: project, Image: "incus-base", InstanceType: typ,
		Memory: 4 << 30, SSHUser: "root", SSHKeyVia: keyVia, SecureBoot: "false"}, TTL: time.Hour, BootTimeout: 8 * time.Second}
}

func TestEachInstanceTypeRunsTheSameLifecycle(t *testing.T) {
	for _, c := range []struct {
		name               string
		typ                string
		addressBeforeAgent bool
	}{
		{"container", incus.Container, false},
		{"vm, address once the agent answers", incus.VirtualMachine, false},
		{"vm, address from the host before the agent", incus.VirtualMachine, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{NeedsSecureBootOff: true})
			f.AgentDelay, f.AddressBeforeAgent = 3, c.addressBeforeAgent
			ctx := context.Background()
			start := time.Now()
			mc, err := m.Create(ctx, spec(c.typ, machine.KeyViaFile))
			require.NoError(t, err)
			t.Logf("ready in %s", time.Since(start).Round(time.Millisecond))

			status, cfg, ok := f.Instance(project, mc.Name)
			require.True(t, ok)
			assert.Equal(t, "Running", status)
			assert.Equal(t, "4GiB", cfg["limits.memory"])
			assert.Equal(t, machine.CreatedBy, cfg["user.ccci.created-by"])
			assert.Equal(t, m.RunID, cfg["user.ccci.run-id"])
			assert.Equal(t, cfg["volatile.uuid"], mc.UUID, "the uuid recorded at creation")
			assert.NotContains(t, cfg, "user.ssh_authorized_keys", "the file API way asks nothing of the image")
			if c.typ == incus.VirtualMachine {
				assert.Equal(t, "false", cfg["security.secureboot"])
			} else {
				assert.NotContains(t, cfg, "security.secureboot", "not a container setting")
			}
			// The key went in through the file API, root-only.
			keys, mode, ok := f.File(project, mc.Name, "/root/.ssh/authorized_keys")
			require.True(t, ok, "authorized_keys pushed")
			assert.Equal(t, 0o600, mode)
			assert.Equal(t, string(ssh.MarshalAuthorizedKey(mc.Signer.PublicKey())), string(keys))
			_, dirMode, _ := f.File(project, mc.Name, "/root/.ssh/")
			assert.Equal(t, 0o700, dirMode)
			// The address is the NIC's (by MAC), never docker0's.
			assert.Equal(t, "127.0.0.1", mc.IP)
			hk, _, _ := f.File(project, mc.Name, "/etc/ssh/ssh_host_ed25519_key.pub")
			assert.Equal(t, strings.TrimSpace(string(hk)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(mc.HostKey))), "host key pinned through Incus")

			cl, err := mc.SSH(ctx)
			require.NoError(t, err, "SSH with the pushed key, the pinned host key")
			_, err = cl.Run(ctx, "true", 5*time.Second)
			assert.NoError(t, err)
			cl.Close()

			if c.typ == incus.VirtualMachine {
				assert.Contains(t, f.Requests(), "POST /1.0/instances/"+mc.Name+"/exec", "the host key was read through the agent")
			}
			// A restart through Incus: reachable again, same pinned host key.
			pinned := ssh.FingerprintSHA256(mc.HostKey)
			forced, err := mc.Restart(ctx, time.Minute, 10*time.Second, machine.KeyViaFile)
			require.NoError(t, err)
			assert.False(t, forced, "the guest shut down in time")
			assert.Contains(t, f.Requests(), "PUT /1.0/instances/"+mc.Name+"/state")
			assert.Equal(t, pinned, ssh.FingerprintSHA256(mc.HostKey))
			cl, err = mc.SSH(ctx)
			require.NoError(t, err, "SSH after the restart")
			cl.Close()

			require.NoError(t, m.DestroyAll(ctx))
			_, _, exists := f.Instance(project, mc.Name)
			assert.False(t, exists, "destroyed")
		})
	}
}

// A VM whose agent never answers fails in bounded time with Incus's own
// words and the stage, and is destroyed.
func TestAVMWhoseAgentNeverAnswersIsABoundedClearErrorAndIsDestroyed(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(*incustest.Server, *machine.Spec)
	}{
		{"agent never starts", func(f *incustest.Server, _ *machine.Spec) { f.AgentNever, f.AddressBeforeAgent = true, true }},
		{"unsigned image with secure boot on", func(f *incustest.Server, s *machine.Spec) { s.SecureBoot, f.AddressBeforeAgent = "true", true }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{NeedsSecureBootOff: true})
			s := spec(incus.VirtualMachine, machine.KeyViaFile)
			s.BootTimeout = 3 * time.Second
			c.setup(f, &s)
			start := time.Now()
			mc, err := m.Create(context.Background(), s)
			took := time.Since(start)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "host key stage")
			assert.Contains(t, err.Error(), "VM agent isn't currently running", "Incus's own answer is in the message")
			assert.Less(t, took, 10*time.Second, "bounded by the boot timeout")
			require.NotNil(t, mc, "the caller's teardown knows the half-made machine")
			require.NoError(t, m.DestroyAll(context.Background()))
			_, _, exists := f.Instance(project, mc.Name)
			assert.False(t, exists, "destroyed after the failed boot")
		})
	}
}

// The two ways that need the image's cooperation work when it cooperates,
// and fail at the SSH stage — bounded, named — when it does not.
func TestSSHKeyByTemplateOrCloudInitDependsOnTheImage(t *testing.T) {
	for _, c := range []struct {
		way   string
		image incustest.Image
		ok    bool
	}{
		{machine.KeyViaTemplate, incustest.Image{HonoursSSHKeyTemplate: true}, true},
		{machine.KeyViaTemplate, incustest.Image{}, false},
		{machine.KeyViaCloudInit, incustest.Image{RunsCloudInit: true}, true},
		{machine.KeyViaCloudInit, incustest.Image{}, false},
	} {
		t.Run(c.way+map[bool]string{true: " honoured", false: " ignored by the image"}[c.ok], func(t *testing.T) {
			f, m := newFake(t, c.image)
			s := spec(incus.VirtualMachine, c.way)
			s.BootTimeout = 3 * time.Second
			mc, err := m.Create(context.Background(), s)
			if c.ok {
				require.NoError(t, err)
				_, pushed := f.Requests(), false
				for _, r := range f.Requests() {
					pushed = pushed || strings.HasSuffix(r, "/files")
				}
				assert.False(t, pushed, "no file pushed: the image installed the key")
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "SSH stage")
			}
			require.NoError(t, m.DestroyAll(context.Background()))
			_, _, exists := f.Instance(project, mc.Name)
			assert.False(t, exists)
		})
	}
}

// A restart is proven by the machine, not by Incus's answer: a guest that
// did not boot again (same boot id, same init) is an error naming it.
func TestARestartThatDidNotBootIsNamed(t *testing.T) {
	f, m := newFake(t, incustest.Image{NeedsSecureBootOff: true})
	ctx := context.Background()
	mc, err := m.Create(ctx, spec(incus.VirtualMachine, machine.KeyViaFile))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.DestroyAll(ctx) })
	f.RestartWithoutBoot = true
	_, err = mc.Restart(ctx, time.Minute, 5*time.Second, machine.KeyViaFile)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not boot again")
}

// The restart asks for a clean shutdown within its timeout, and a guest
// still up after it (a VM stopping Docker Swarm) is stopped by force — the
// run goes on, saying so — where it used to fail the restart sentence.
func TestARestartForcesTheStopAfterItsShutdownTimeout(t *testing.T) {
	for _, c := range []struct {
		name   string
		takes  time.Duration
		forced bool
		asked  []incustest.StateRequest
	}{
		{"down in time", 90 * time.Second, false, []incustest.StateRequest{{Action: "restart", Timeout: 120}}},
		{"still up after the timeout", 5 * time.Minute, true, []incustest.StateRequest{{Action: "restart", Timeout: 120}, {Action: "restart", Timeout: 30, Force: true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{NeedsSecureBootOff: true})
			ctx := context.Background()
			mc, err := m.Create(ctx, spec(incus.VirtualMachine, machine.KeyViaFile))
			require.NoError(t, err)
			t.Cleanup(func() { _ = m.DestroyAll(ctx) })
			f.ShutdownTakes = c.takes
			created := len(f.StateRequests()) // the start
			forced, err := mc.Restart(ctx, 2*time.Minute, 10*time.Second, machine.KeyViaFile)
			require.NoError(t, err, "the machine booted again")
			assert.Equal(t, c.forced, forced)
			assert.Equal(t, c.asked, f.StateRequests()[created:])
		})
	}
}
