package testrun_test

// These tests run the real acceptance suite (../../acceptance) as a child
// `go test` binary against the lab, hurt it, and then check the lab through
// the Incus API: nothing left behind, nothing silently passed.

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labtarget"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/testrun"
)

func TestMain(m *testing.M) { os.Exit(labtest.Main(m)) }

type child struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	review string // where this run's evidence goes (never the repo's REVIEW.md)
	tmp    string // the child's TMPDIR
	leases string // where its guardian holds its lease (CCCI_LEASE_DIR): a killed one leaves it, as a dead run's marker
}

var (
	secretsOnce sync.Once
	allSecrets  map[string]string
)

// assertHygiene scans everything the child wrote — its output, its evidence,
// what it left in its TMPDIR — for every secret of the target: 0 hits.
// A child that exited by itself leaves its TMPDIR empty.
func (c *child) assertHygiene(t *testing.T, exitedCleanly bool) {
	t.Helper()
	secretsOnce.Do(func() { allSecrets = labtarget.TargetSecrets(t) })
	s := leakscan.New(leakscan.Needles(allSecrets, 0, nil))
	found, err := s.Reader("the suite's output", strings.NewReader(c.out.String()))
	require.NoError(t, err)
	for _, dir := range []string{filepath.Dir(c.review), c.tmp} {
		f, _, err := s.DirProven(context.Background(), dir)
		require.NoError(t, err)
		found = append(found, f...)
	}
	assert.Empty(t, found, "secret material in what the harness wrote")
	if exitedCleanly {
		left, _ := os.ReadDir(c.tmp)
		assert.Empty(t, left, "temp files left in the run's TMPDIR")
	}
}

// syncBuffer is written by the child's output copier while the test reads it.
// Once it holds closeAfter, it refuses more: the copier stops and closes the
// pipe's read end, as `| head` does.
type syncBuffer struct {
	b          bytes.Buffer
	closeAfter string
	mu         sync.Mutex
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeAfter != "" && bytes.Contains(s.b.Bytes(), []byte(s.closeAfter)) {
		return 0, io.ErrClosedPipe
	}
	return s.b.Write(p)
}

// closeAt makes the output close once marker has been written.
func (s *syncBuffer) closeAt(marker string) { s.mu.Lock(); s.closeAfter = marker; s.mu.Unlock() }
func (s *syncBuffer) String() string        { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// await waits until the child has printed marker, or fails the test.
func (c *child) await(t *testing.T, marker string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(c.out.String(), marker) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the suite never printed %q; output:\n%s", marker, c.out)
}

// evidence returns the entries the child wrote.
func (c *child) evidence(t *testing.T) []evidence.Entry {
	t.Helper()
	p := evidence.PathsFor(c.review)
	require.NoError(t, evidence.Verify(p.JSONL))
	es, err := evidence.Read(p.JSONL)
	require.NoError(t, err)
	return es
}

// startSuite starts the acceptance suite with extra environment.
func startSuite(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	bin := labtest.Suite(t)
	cmd := exec.Command(bin, append([]string{"-test.v", "-test.count=1"}, args...)...)
	review := filepath.Join(t.TempDir(), "REVIEW.md")
	tmp, leases := t.TempDir(), t.TempDir()
	cmd.Env = append(os.Environ(), "CCCI_ACCEPTANCE=1", "CCCI_REVIEW_FILE="+review, "TMPDIR="+tmp, testrun.LeaseDirEnv+"="+leases)
	cmd.Env = append(append(cmd.Env, labtest.ShortWaits...), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("suite output:\n%s", out)
		}
	})
	return &child{cmd: cmd, out: out, review: review, tmp: tmp, leases: leases}
}

// wait returns the exit code; the guardian shares our output pipe, so Wait
// also waits for it to finish its job.
func (c *child) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(4 * time.Minute):
		_ = c.cmd.Process.Kill()
		t.Fatalf("suite did not exit in 4 minutes; output:\n%s", c.out)
	}
	return c.cmd.ProcessState.ExitCode()
}

// labelled returns the harness-labelled instances in the project.
func labelled(t *testing.T, c *incus.Client, project, prefix string) map[string]bool {
	t.Helper()
	ins, err := c.Instances(context.Background(), project)
	require.NoError(t, err)
	l := machine.Labels{Prefix: prefix}
	out := map[string]bool{}
	for _, in := range ins {
		if l.Marked(&in) {
			out[in.Name] = true
		}
	}
	return out
}

// awaitNewInstance polls until a labelled instance appears that was not there before.
func awaitNewInstance(t *testing.T, c *incus.Client, project, prefix string, before map[string]bool) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for name := range labelled(t, c, project, prefix) {
			if !before[name] {
				return name
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the suite never created its machine")
	return ""
}

func assertGone(t *testing.T, c *incus.Client, project, name string) {
	t.Helper()
	_, err := c.Instance(context.Background(), project, name)
	assert.ErrorIs(t, err, incus.ErrNotFound, "%s/%s must be gone: there may be a dangling instance", project, name)
}

// SKIP_teardown keeps the machine and writes its state; SKIP_provision reuses
// it. A reused machine is not brand new, and one with an age key on it is not
// blank: the blank-machine test must fail on it, naming both causes. The
// reusing run then tears the machine down.
func TestAKeptMachineIsReusedAndItsRunSaysItIsNotEvidence(t *testing.T) {
	c, cfg := faultLab(t)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	env := []string{"CCCI_STATE_FILE=" + stateFile}

	first := startSuite(t, append(env, "SKIP_teardown=1"), "-test.run", "TestMachineIsBrandNewAndBlank")
	require.Equal(t, 0, first.wait(t), "first run passes and keeps its machine; output:\n%s", first.out)
	st, err := os.Stat(stateFile)
	require.NoError(t, err, "state file written")
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	key, err := os.Stat(stateFile + ".d/id_ed25519")
	require.NoError(t, err, "the kept machine's SSH key is written")
	assert.Equal(t, os.FileMode(0o600), key.Mode().Perm(), "key file mode")
	dir, err := os.Stat(stateFile + ".d")
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), dir.Mode().Perm(), "key directory mode")
	kept := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
	name := nameFromOutput(t, first.out.String())
	require.True(t, kept[name], "the machine %s is kept", name)
	in, err := c.Instance(context.Background(), cfg.Machine.Project, name)
	require.NoError(t, err)
	assert.Equal(t, "true", in.Config[machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}.Kept()],
		"the kept machine says so, or lab up sweeps it as a dead run's orphan")
	t.Cleanup(func() { // only if an assertion below stopped the test before the second run's teardown
		destroyLeftover(t, c, cfg, name)
	})

	// Leave an age key on the kept machine, as a botched earlier attempt would.
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	require.NoError(t, c.PushFile(context.Background(), cfg.Machine.Project, name,
		incus.FileSpec{Path: "/root/leftover-key.txt", Mode: 0o600, Data: []byte(id.String() + "\n")}))

	second := startSuite(t, append(env, "SKIP_provision=1"), "-test.run", "TestMachineIsBrandNewAndBlank")
	code := second.wait(t)
	out := second.out.String()
	assert.Equal(t, 0, code, "a reuse the user asked for does not fail the brand-new check: it says why it does not apply")
	assert.Contains(t, out, "SKIP_provision: reusing "+cfg.Machine.Project+"/"+name)
	assert.Contains(t, out, "the machine was reused (SKIP_provision=1): not a cold run — not evidence")
	assert.Contains(t, out, "age secret key in /root/leftover-key.txt", "the skip says what the kept machine holds")
	assert.NotContains(t, out, id.String(), "the key itself is never printed")
	es := second.evidence(t)
	require.Len(t, es, 1)
	assert.Contains(t, es[0].NotEvidence, "not a cold run", "the evidence says the run is not evidence")
	assert.Empty(t, es[0].Machine, "no machine created by the reusing run")
	assertGone(t, c, cfg.Machine.Project, name)
	_, err = os.Stat(stateFile)
	assert.True(t, os.IsNotExist(err), "state file removed after the reusing run's teardown")
	_, err = os.Stat(stateFile + ".d")
	assert.True(t, os.IsNotExist(err), "the key and its directory removed too")
}

// An untrusted client certificate or an unreachable API fails the run before
// anything is created, naming the endpoint and the cause.
func TestBrokenIncusAccessFailsBeforeAnySideEffect(t *testing.T) {
	c, cfg := faultLab(t)
	dir := t.TempDir()
	// A fresh, never-trusted client certificate.
	crt, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-nodes", "-days", "1", "-subj", "/CN=untrusted", "-keyout", key, "-out", crt).CombinedOutput()
	require.NoError(t, err, "%s", out)
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"untrusted client cert", []string{"CCCI_INCUS_CLIENT_CERT=" + crt, "CCCI_INCUS_CLIENT_KEY=" + key},
			[]string{cfg.Incus.URL, "not trusted"}},
		{"API unreachable", []string{"CCCI_INCUS_URL=https://127.0.0.1:1"},
			[]string{"https://127.0.0.1:1", "connection refused"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
			ch := startSuite(t, tc.env, "-test.run", "TestMachineIsBrandNewAndBlank")
			assert.NotEqual(t, 0, ch.wait(t))
			for _, w := range tc.want {
				assert.Contains(t, ch.out.String(), w)
			}
			assert.Contains(t, ch.out.String(), "nothing was created")
			assert.Equal(t, before, labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix))
		})
	}
}

func nameFromOutput(t *testing.T, out string) string {
	t.Helper()
	const marker = "SKIP_teardown: kept "
	i := strings.Index(out, marker)
	require.GreaterOrEqual(t, i, 0, "no %q in output:\n%s", marker, out)
	rest := out[i+len(marker):]
	id := rest[:strings.IndexByte(rest, ' ')]
	_, name, _ := strings.Cut(id, "/")
	return name
}

// go test's -timeout would kill the process with no cleanup: the run tears
// down a reserve before it, fails, and says so in its evidence. Every wait
// the run itself makes is bounded within the -timeout (see the next test),
// so what reaches the deadline is a check stuck in work of its own: a fault
// holds the blank-machine test once the machine is up.
func TestTimeoutDeadlineTearsDownFirst(t *testing.T) {
	t.Parallel() // it waits for its deadline: beside the README loop, which waits for its machine
	c, cfg := faultLab(t)
	// 130s: the reserve is 60s (the longest wait teardown makes, bounds.Destroy); the budget (create 5s +
	// boot 15s + blank-state probe 5s + 0 steps + converge 10s + TLS ready 3s + hold 1s + the restart's shutdown
	// 5s, boot 15s and converge 10s + 60s = 129s) fits, and teardown starts at 70s. The converge timeout holds
	// one probe command (bounds.Command); with no install, nothing installed is judged or searched.
	start := time.Now()
	ch := startSuite(t, []string{roomForOneMore(cfg), "CCCI_FAULT=hang:after-provision", "CCCI_BASE_REPO_URL=", "CCCI_CREATE_TIMEOUT=5s",
		"CCCI_BOOT_TIMEOUT=15s", "CCCI_CONVERGE_TIMEOUT=10s", "CCCI_SETTLE=1s", "CCCI_HOLD=1s", "CCCI_TLS_READY=3s", "CCCI_SCAN_TIMEOUT=5s", "CCCI_SHUTDOWN_TIMEOUT=5s", "CCCI_TEARDOWN_RESERVE=60s"},
		"-test.run", "TestMachineIsBrandNewAndBlank", "-test.timeout", "130s")
	code := ch.wait(t)
	out := ch.out.String()
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "the -timeout deadline is near")
	assert.NotContains(t, out, "panic: test timed out", "teardown must come before go test's own timeout")
	assert.Less(t, time.Since(start), 130*time.Second, "the run ended before go test's deadline")
	ids := runIDs(out)
	require.Len(t, ids, 1, "the suite started one run")
	assert.Empty(t, instancesOfRuns(t, c, cfg, ids), "instances of run %s left behind", ids[0])
	es := ch.evidence(t)
	if assert.Len(t, es, 1) {
		assert.Contains(t, es[0].Interrupted, "-timeout deadline")
		assertNoEgressTable(t, es[0].RunID)
	}
}

// A -timeout that cannot hold the machine's boot, every install step,
// convergence, settling and the teardown reserve stops the run before
// anything is created, naming the -timeout it needs and the bounds it added.
func TestATimeoutTooShortStopsTheRunBeforeItCreatesAnything(t *testing.T) {
	c, cfg := faultLab(t)
	before := labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix)
	ch := startSuite(t, []string{"CCCI_STEP_TIMEOUT=2m"}, "-test.run", "TestC4", "-test.timeout", "5m")
	code := ch.wait(t)
	out := ch.out.String()
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "go test's -timeout 5m0s cannot hold this run")
	assert.Contains(t, out, "install steps × CCCI_STEP_TIMEOUT 2m0s")
	assert.Regexp(t, `run with -timeout \d+h?\d*m0s`, out)
	assert.Contains(t, out, "nothing was created")
	assert.NotContains(t, out, "creating "+cfg.Machine.Project+"/", "no machine was asked for")
	assert.Equal(t, before, labelled(t, c, cfg.Machine.Project, cfg.Guardrails.LabelPrefix), "no instance created")
}

// A variable inherited from the caller cannot turn the suite into a no-op:
// the guardian's role comes from its command line only, so a CCCI_GUARDIAN
// in the environment (the old switch) still runs the tests.
func TestInheritedGuardianVariableDoesNotSkipTheSuite(t *testing.T) {
	faultLab(t)
	ch := startSuite(t, []string{"CCCI_GUARDIAN=1"}, "-test.run", "TestC7Docs")
	assert.Equal(t, 0, ch.wait(t))
	assert.Contains(t, ch.out.String(), "--- PASS: TestC7Docs", "the test ran")
}

// A run whose evidence cannot be written has proved nothing anyone can
// check: every test passes, the entry cannot be written, the run fails.
func TestAnEvidenceWriteFailureFailsTheRun(t *testing.T) {
	faultLab(t)
	notADir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notADir, nil, 0o644))
	ch := startSuite(t, []string{"CCCI_REVIEW_FILE=" + filepath.Join(notADir, "REVIEW.md")}, "-test.run", "TestC7Docs")
	code := ch.wait(t)
	out := ch.out.String()
	assert.Contains(t, out, "--- PASS: TestC7Docs", "the test itself passed")
	assert.NotEqual(t, 0, code, "but the run fails without its evidence")
	assert.Contains(t, out, "evidence: could not write")
}
