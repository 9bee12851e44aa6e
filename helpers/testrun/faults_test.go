package testrun_test

// The fault matrix: each row hurts a real acceptance run and then asks the
// lab, through the API, what is left. Nothing may be left behind, nothing may
// silently pass, every error must name its stage, and the decoys — an
// unlabelled instance in the allowed project and lichen-staging in another —
// must be untouched.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/size"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// faultLab is the lab client for a fault test, with decoys in place — an
// unlabelled instance in the allowed project, and whatever runs in the decoy
// project — checked untouched when the test ends.
func faultLab(t *testing.T) (*incus.Client, *config.Config) {
	t.Helper()
	c, cfg := labtest.Client(t, "https")
	ctx := context.Background()
	name := fmt.Sprintf("decoy-unlabelled-%d", time.Now().UnixNano()%1e9)
	require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: name, Project: cfg.Machine.Project, Type: incus.Container,
		ImageAlias: cfg.Machine.Image, Config: map[string]string{"limits.memory": "256MiB"}}))
	t.Cleanup(func() { _ = c.DeleteInstance(context.Background(), cfg.Machine.Project, name) })
	decoys := labtest.DecoyProject(t, c)
	other, err := c.Instances(ctx, decoys)
	require.NoError(t, err)
	t.Cleanup(func() { // runs before the deletion above
		_, err := c.Instance(ctx, cfg.Machine.Project, name)
		assert.NoError(t, err, "the unlabelled decoy %s/%s must survive", cfg.Machine.Project, name)
		for _, in := range other {
			now, err := c.Instance(ctx, decoys, in.Name)
			if assert.NoError(t, err, "%s/%s must survive", decoys, in.Name) {
				assert.Equal(t, in.Status, now.Status, "%s/%s must be left as it was", decoys, in.Name)
			}
		}
	})
	return c, cfg
}

// destroyLeftover removes, when a test ends, a harness instance that a failed
// assertion may have left (its own labels make the claim: test-only).
func destroyLeftover(t *testing.T, c *incus.Client, cfg *config.Config, name string) {
	ctx := context.Background()
	in, err := c.Instance(ctx, cfg.Machine.Project, name)
	if err != nil {
		return
	}
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	claim := machine.Claim{Project: cfg.Machine.Project, Name: name, RunID: in.Config[l.RunID()], UUID: in.Config[machine.UUIDKey]}
	_ = machine.DestroyClaimed(ctx, c, cfg.Guardrails, l, claim, t.Logf)
}

// assertNoEgressTable: the run's nftables table is gone too.
func assertNoEgressTable(t *testing.T, runID string) {
	t.Helper()
	assert.False(t, egress.Exists(context.Background(), runID), "the egress table of run %s was left behind", runID)
}

// noneOfTheRunLeft asserts that no labelled instance exists that was not there before.
func noneOfTheRunLeft(t *testing.T, c *incus.Client, cfg *config.Config, before map[string]bool) {
	t.Helper()
	for name := range labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix) {
		assert.True(t, before[name], "instance %s was left behind", name)
	}
}

// runIDs are the runs a suite's output says it started ("run <id>: Incus …").
func runIDs(out string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`\] run (r[0-9a-z-]+): Incus `).FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// instancesOfRuns are the instances labelled with one of these run ids:
// what a test that runs beside another (t.Parallel) may call its own.
func instancesOfRuns(t *testing.T, c *incus.Client, cfg *config.Config, ids []string) []string {
	t.Helper()
	ins, err := c.Instances(context.Background(), cfg.Machine.Project)
	require.NoError(t, err)
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	var out []string
	for _, in := range ins {
		if l.Marked(&in) && slices.Contains(ids, in.Config[l.RunID()]) {
			out = append(out, in.Name)
		}
	}
	return out
}

// roomForOneMore is the RAM cap that lets a run start while another test's
// machine runs (the guardrail counts every harness machine on the host).
func roomForOneMore(cfg *config.Config) string {
	return "CCCI_RAM_CAP=" + size.Format(cfg.Guardrails.RAMCap+cfg.Machine.Memory)
}

// Interrupts at each stage: the run exits non-zero, tears down, and its
// evidence says it was interrupted.
func TestInterruptAtEachStage(t *testing.T) {
	rows := []struct {
		name   string
		sig    syscall.Signal
		run    string
		marker string
	}{
		{"SIGINT during install", syscall.SIGINT, "TestC4", `install step 2/`},
		{"SIGTERM during install", syscall.SIGTERM, "TestC4", `install step 4/`},
		{"SIGINT during checks", syscall.SIGINT, "TestC3", `install step 5/5`},
		{"SIGTERM during checks", syscall.SIGTERM, "TestC3", `install step 5/5`},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			c, cfg := faultLab(t)
			before := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
			ch := startSuite(t, nil, "-test.run", row.run)
			ch.await(t, row.marker, 2*time.Minute)
			if strings.Contains(row.name, "checks") {
				time.Sleep(time.Second) // the install is done; C3 is scanning
			}
			require.NoError(t, ch.cmd.Process.Signal(row.sig))
			assert.NotEqual(t, 0, ch.wait(t), "an interrupted run must not pass")
			assert.Contains(t, ch.out.String(), "tearing down before exit")
			noneOfTheRunLeft(t, c, cfg, before)
			if es := ch.evidence(t); assert.Len(t, es, 1) {
				assert.Equal(t, "interrupted by "+row.sig.String(), es[0].Interrupted)
				assertNoEgressTable(t, es[0].RunID)
			}
			ch.assertHygiene(t, true)
		})
	}
}

// A panic inside a check kills the test process: its guardian tears down and
// writes the evidence.
func TestPanicInACheckStillTearsDown(t *testing.T) {
	c, cfg := faultLab(t)
	before := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
	ch := startSuite(t, []string{"CCCI_FAULT=panic:after-install"}, "-test.run", "TestC4")
	assert.NotEqual(t, 0, ch.wait(t))
	out := ch.out.String()
	assert.Contains(t, out, "injected fault (CCCI_FAULT=panic:after-install)")
	assert.Contains(t, out, "ended without teardown: destroying")
	noneOfTheRunLeft(t, c, cfg, before)
	if es := ch.evidence(t); assert.Len(t, es, 1) {
		assert.Contains(t, es[0].Interrupted, "died before its teardown")
	}
	ch.assertHygiene(t, false) // a panic skips the run's own cleanup: what is left must hold no secret
}

// `go test … | head`: the output closes mid-install. The test process dies
// of SIGPIPE at its next line; its guardian, writing to the same closed
// pipe, still tears down and writes the evidence.
func TestClosedOutputStillTearsDown(t *testing.T) {
	c, cfg := faultLab(t)
	before := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
	ch := startSuite(t, nil, "-test.run", "TestC4")
	ch.out.closeAt("install step 2/")
	assert.NotEqual(t, 0, ch.wait(t), "a run whose output closed must not pass")
	// The guardian outlives the test process: its entry is its last act.
	wrote := assert.NoError(t, wait.Eventually(context.Background(), "the guardian's evidence", 2*time.Minute, func(bool) error {
		_, err := os.Stat(evidence.PathsFor(ch.review).JSONL)
		return err
	}), "the guardian wrote no evidence: did it die of SIGPIPE on its first log line?")
	noneOfTheRunLeft(t, c, cfg, before)
	if !wrote {
		return
	}
	if es := ch.evidence(t); assert.Len(t, es, 1) {
		assert.Contains(t, es[0].Interrupted, "died before its teardown")
		assert.Contains(t, es[0].Destroy, "destroyed by the guardian")
		assertNoEgressTable(t, es[0].RunID)
	}
}

// kill -9 of the run AND its guardian leaves an orphan; the next run's reaper
// removes it (its label has expired) before creating its own machine, and
// leaves alone the unexpired machine of a concurrent run.
func TestOrphanOfAKilledRunIsReapedByTheNext(t *testing.T) {
	c, cfg := faultLab(t)
	ctx := context.Background()
	// A concurrent run's machine: labelled, not expired (stopped: no RAM used).
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	concurrent := fmt.Sprintf("ccci-r-concurrent-%d", time.Now().UnixNano()%1e9)
	require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: concurrent, Project: cfg.Machine.Project, Type: incus.Container,
		ImageAlias: cfg.Machine.Image, Config: map[string]string{"limits.memory": "256MiB", l.CreatedBy(): machine.CreatedBy,
			l.RunID(): "r-concurrent", l.ExpiresAt(): time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}}))
	t.Cleanup(func() { _ = c.DeleteInstance(context.Background(), cfg.Machine.Project, concurrent) })

	before := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
	first := startSuite(t, []string{"CCCI_TTL=1s"}, "-test.run", "TestC4")
	first.await(t, "install step 2/", 2*time.Minute)
	for _, pid := range append(childPIDs(first.cmd.Process.Pid), first.cmd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL) // the guardian first: no cleanup is possible
	}
	first.wait(t)
	var orphan string
	for name := range labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix) {
		if !before[name] {
			orphan = name
		}
	}
	require.NotEmpty(t, orphan, "killing run and guardian leaves an orphan (output:\n%s)", first.out)
	// … and its lease, held by nobody: what proves to the lab's sweep that the run is dead.
	lease := filepath.Join(first.leases, strings.TrimPrefix(orphan, "ccci-")+".lease")
	if assert.FileExists(t, lease, "the dead run's lease stays") {
		assert.NoError(t, exec.Command("flock", "-n", lease, "true").Run(), "and nobody holds it")
	}
	t.Cleanup(func() {
		destroyLeftover(t, c, cfg, orphan)
		_ = egress.Drop(context.Background(), strings.TrimPrefix(orphan, "ccci-")) // nothing was left to drop it
	})

	second := startSuite(t, nil, "-test.run", "TestMachineIsBrandNewAndBlank")
	assert.Equal(t, 0, second.wait(t), "the next run passes; output:\n%s", second.out)
	assert.Contains(t, second.out.String(), "reaper removed expired orphans: ["+cfg.Machine.Project+"/"+orphan+"]")
	assertGone(t, c, cfg.Machine.Project, orphan)
	_, err := c.Instance(ctx, cfg.Machine.Project, concurrent)
	assert.NoError(t, err, "the concurrent run's unexpired machine is left alone")
}

// childPIDs lists the direct children of pid (the guardian).
func childPIDs(pid int) []int {
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// Infrastructure faults fail with a clear error naming the stage, in
// bounded time, with teardown done.
func TestInfrastructureFaultsNameTheStage(t *testing.T) {
	rows := []struct {
		name  string
		env   []string
		want  []string
		limit time.Duration
	}{
		{"the instance cannot be created", []string{"CCCI_IMAGE=no-such-image"},
			[]string{"provision stage", `image "no-such-image"`}, time.Minute},
		{"SSH never comes up", []string{"CCCI_SSH_USER=nosuchuser", "CCCI_SSH_KEY_VIA=template", "CCCI_BOOT_TIMEOUT=15s"},
			[]string{"provision stage", "SSH stage", "timed out after", "unable to authenticate"}, 2 * time.Minute},
		{"the git server is unreachable", []string{"CCCI_BASE_REPO_URL=http://10.99.0.1:1/good/cc-ci.git"},
			[]string{"the target does not load: fetch base repo http://10.99.0.1:1/good/cc-ci.git", "Couldn't connect"}, time.Minute},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			c, cfg := faultLab(t)
			before := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
			start := time.Now()
			ch := startSuite(t, row.env, "-test.run", "TestC4")
			assert.NotEqual(t, 0, ch.wait(t))
			assert.Less(t, time.Since(start), row.limit, "bounded time")
			for _, w := range row.want {
				assert.Contains(t, ch.out.String(), w)
			}
			noneOfTheRunLeft(t, c, cfg, before)
			ch.assertHygiene(t, true)
		})
	}
}

// forgedState writes a well-formed state file (and its SSH key) naming
// project/name, with that instance's real uuid unless one is given.
func forgedState(t *testing.T, c *incus.Client, project, name, runID, uuid string) string {
	t.Helper()
	in, err := c.Instance(context.Background(), project, name)
	require.NoError(t, err)
	if uuid == "" {
		uuid = in.Config[machine.UUIDKey]
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "forged")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(path+".d", 0o700))
	require.NoError(t, os.WriteFile(path+".d/id_ed25519", pem.EncodeToMemory(block), 0o600))
	hk, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	st := map[string]any{"run_id": runID, "project": project, "name": name, "type": "container", "image": "ccci-blank",
		"ip": "10.99.0.250", "user": "root", "host_key": string(ssh.MarshalAuthorizedKey(hk)), "key_file": path + ".d/id_ed25519",
		"uuid": uuid}
	b, err := json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}
