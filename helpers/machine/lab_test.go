package machine_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/remote"
)

func newManager(t *testing.T) (*machine.Manager, *config.Config) {
	c, cfg := labtest.Client(t, "https")
	return &machine.Manager{Client: c, Guard: machine.GuardrailsFrom(cfg), Labels: machine.Labels{Prefix: cfg.LabelPrefix},
		RunID: machine.NewRunID(time.Now()), Log: t.Logf}, cfg
}

func smallSpec(cfg *config.Config) machine.Spec {
	s := machine.SpecFrom(cfg)
	s.Memory = 512 << 20
	return s
}

// The whole life of a throwaway machine: created with labels and limits,
// reachable over SSH with the pinned key, shell state kept across blocks,
// destroyed and proven gone.
func TestCreateReachDestroy(t *testing.T) {
	m, cfg := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = m.DestroyAll(context.Background()) })

	start := time.Now()
	mc, err := m.Create(ctx, smallSpec(cfg))
	require.NoError(t, err)
	t.Logf("create → SSH ready: %s", time.Since(start).Round(time.Millisecond))

	in, err := m.Client.Instance(ctx, mc.Project, mc.Name)
	require.NoError(t, err)
	l := machine.Labels{Prefix: cfg.LabelPrefix}
	assert.Equal(t, m.RunID, in.Config[l.RunID()])
	assert.Equal(t, machine.CreatedBy, in.Config[l.CreatedBy()])
	exp, err := time.Parse(time.RFC3339, in.Config[l.ExpiresAt()])
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(cfg.TTL), exp, time.Minute)
	assert.Equal(t, "512MiB", in.Config["limits.memory"])
	assert.True(t, strings.HasPrefix(mc.Name, "ccci-"+m.RunID))

	cl, err := mc.SSH(ctx)
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, mc.ReachedBySSH(ctx, cl))

	_, err = cl.Run(ctx, "false", 10*time.Second)
	var ce *remote.CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 1, ce.ExitCode)

	_, err = cl.Run(ctx, "sleep 30", 500*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// A persistent shell: state carries over, pipefail and errexit hold, stdin is not swallowed.
	sh, err := cl.Shell(ctx)
	require.NoError(t, err)
	_, err = sh.Exec(ctx, "cd /tmp\nexport GREETING=hi\ncat", 10*time.Second)
	require.NoError(t, err)
	res, err := sh.Exec(ctx, `echo "$PWD $GREETING"`, 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "/tmp hi", strings.TrimSpace(string(res.Stdout)))
	res, err = sh.Exec(ctx, "false | true\necho not reached", 10*time.Second)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 1, res.ExitCode, "pipefail: the failing stage decides")
	assert.NotContains(t, string(res.Stdout), "not reached", "errexit: the block stops at the failure")
	_, err = sh.Exec(ctx, "true", 10*time.Second)
	require.ErrorIs(t, err, remote.ErrShellEnded)

	start = time.Now()
	require.NoError(t, mc.Destroy(ctx))
	t.Logf("destroy: %s", time.Since(start).Round(time.Millisecond))
	_, err = m.Client.Instance(ctx, mc.Project, mc.Name)
	require.ErrorIs(t, err, incus.ErrNotFound)
}

// A host key other than the pinned one is refused: no trust on first use.
func TestSwappedHostKeyIsRefused(t *testing.T) {
	m, cfg := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = m.DestroyAll(context.Background()) })
	mc, err := m.Create(ctx, smallSpec(cfg))
	require.NoError(t, err)

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	impostor, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	mc.HostKey = impostor
	_, err = mc.SSH(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "host key mismatch")
}

func TestGuardrailRefusesProjectOutsideAllowList(t *testing.T) {
	m, cfg := newManager(t)
	spec := smallSpec(cfg)
	spec.Project = "default"
	before := countAll(t, m.Client)
	_, err := m.Create(context.Background(), spec)
	var ge *machine.GuardrailError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, "project allow-list", ge.Rule)
	assert.Contains(t, err.Error(), `project "default" is not in the allow-list [terraform-ci]`)
	assert.Equal(t, before, countAll(t, m.Client), "nothing was created")
}

// Over the RAM cap, creation is refused and the message shows the arithmetic.
func TestGuardrailRefusesOverRAMCap(t *testing.T) {
	m, cfg := newManager(t)
	ctx := context.Background()
	// A running decoy of 1GiB in another project counts towards the sum too,
	// as part of one sum: other tenants' instances are not named.
	decoy := startDecoy(t, m.Client, cfg.DecoyProject, "1GiB", nil)
	m.Guard.RAMCap = 4 << 30
	spec := smallSpec(cfg)
	spec.Memory = 4 << 30
	before := countAll(t, m.Client)
	_, err := m.Create(ctx, spec)
	var ge *machine.GuardrailError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, "RAM cap", ge.Rule)
	assert.Contains(t, err.Error(), "instance(s) in other projects")
	assert.NotContains(t, err.Error(), decoy, "another project's instance is not named")
	assert.Contains(t, err.Error(), "new 4GiB")
	assert.Contains(t, err.Error(), "> cap 4GiB")
	assert.Equal(t, before, countAll(t, m.Client), "nothing was created")
}

// Two runs may check the RAM sum at the same moment. The sum is checked again
// once our machine exists; if another instance started meanwhile and the
// total no longer fits, our own machine is destroyed and creation fails.
func TestRAMIsCheckedAgainAfterCreating(t *testing.T) {
	m, cfg := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before, err := machine.RAM(ctx, m.Client, m.Guard, 0)
	require.NoError(t, err)
	spec := smallSpec(cfg)
	// Room for exactly our machine, then a concurrent 1GiB instance starts.
	m.Guard.RAMCap = before.Total + spec.Memory
	m.Tracker = &concurrentStart{t: t, c: m.Client, project: cfg.DecoyProject}
	mc, err := m.Create(ctx, spec)
	var ge *machine.GuardrailError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, "RAM cap", ge.Rule)
	assert.Contains(t, err.Error(), "re-checked after creating "+mc.Name)
	assert.Contains(t, err.Error(), "the new machine is destroyed")
	_, err = m.Client.Instance(ctx, mc.Project, mc.Name)
	assert.ErrorIs(t, err, incus.ErrNotFound, "our machine was given back")
}

// concurrentStart stands in for another run: when our machine's uuid is
// pinned (after creation, before the re-check), it starts an instance.
type concurrentStart struct {
	t       *testing.T
	c       *incus.Client
	project string
}

func (s *concurrentStart) Track(string, string) error { return nil }
func (s *concurrentStart) Pin(string, string, string) error {
	startDecoy(s.t, s.c, s.project, "1GiB", nil)
	return nil
}

func TestGuardrailMachinesPerRun(t *testing.T) {
	m, cfg := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = m.DestroyAll(context.Background()) })
	_, err := m.Create(ctx, smallSpec(cfg))
	require.NoError(t, err)
	_, err = m.Create(ctx, smallSpec(cfg))
	var ge *machine.GuardrailError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, "machines per run", ge.Rule)
}

// The reaper removes an expired labelled instance, keeps a live one of a
// concurrent run, and never touches an unlabelled instance or another project.
func TestReaperOnlyTakesExpiredLabelledInstances(t *testing.T) {
	m, cfg := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := machine.Labels{Prefix: cfg.LabelPrefix}
	labelled := func(expires time.Time) map[string]string {
		return map[string]string{l.CreatedBy(): machine.CreatedBy, l.RunID(): "r-test", l.ExpiresAt(): expires.UTC().Format(time.RFC3339)}
	}
	past := time.Now().Add(-time.Hour)
	expired := startDecoy(t, m.Client, cfg.Project, "256MiB", labelled(past))
	live := startDecoy(t, m.Client, cfg.Project, "256MiB", labelled(time.Now().Add(time.Hour)))
	unlabelled := startDecoy(t, m.Client, cfg.Project, "256MiB", map[string]string{l.ExpiresAt(): past.UTC().Format(time.RFC3339)})
	otherProject := startDecoy(t, m.Client, cfg.DecoyProject, "256MiB", labelled(past))

	res, err := machine.Reap(ctx, m.Client, m.Guard, l, time.Now(), t.Logf)
	require.NoError(t, err)
	assert.Contains(t, res.Deleted, expired)
	assert.Contains(t, res.Kept, live)
	for _, survivor := range []string{live, unlabelled, otherProject} {
		project, name, _ := strings.Cut(survivor, "/")
		_, err := m.Client.Instance(ctx, project, name)
		assert.NoError(t, err, "%s must survive the reaper", survivor)
	}
	project, name, _ := strings.Cut(expired, "/")
	_, err = m.Client.Instance(ctx, project, name)
	assert.ErrorIs(t, err, incus.ErrNotFound)
}

// startDecoy starts a small instance that the test removes itself; it returns project/name.
func startDecoy(t *testing.T, c *incus.Client, project, memory string, cfg map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("decoy-%d", time.Now().UnixNano()%1e9)
	conf := map[string]string{"limits.memory": memory}
	for k, v := range cfg {
		conf[k] = v
	}
	require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: name, Project: project, Type: incus.Container,
		ImageAlias: "ccci-blank", Config: conf}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = c.SetState(ctx, project, name, "stop", true)
		if err := c.DeleteInstance(ctx, project, name); err != nil && !errors.Is(err, incus.ErrNotFound) {
			t.Errorf("decoy cleanup: %v", err)
		}
	})
	require.NoError(t, c.SetState(ctx, project, name, "start", false))
	return project + "/" + name
}

func countAll(t *testing.T, c *incus.Client) int {
	ins, err := c.Instances(context.Background(), "")
	require.NoError(t, err)
	return len(ins)
}
