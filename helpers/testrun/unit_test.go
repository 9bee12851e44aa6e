package testrun

// Tests of testrun's own logic that need no lab (the self-tests in
// selftest_test.go and faults_test.go run whole suites against the lab).

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
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
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// outcome records what blocked did to a test: skip or fail, and the message.
type outcome struct {
	testing.TB
	name, skipped, failed string
}

func (o *outcome) Helper()        {}
func (o *outcome) Name() string   { return o.name }
func (o *outcome) Cleanup(func()) {}
func (o *outcome) Skipf(format string, args ...any) {
	o.skipped = sprintf(format, args...)
	runtime.Goexit()
}
func (o *outcome) Fatalf(format string, args ...any) {
	o.failed = sprintf(format, args...)
	runtime.Goexit()
}

func blockedIn(name string, err error) *outcome {
	o := &outcome{name: name}
	done := make(chan struct{})
	go func() { defer close(done); blocked(o, "the install failed", err) }()
	<-done
	return o
}

func TestAFailureIsOwnedByTheTestWhoseSentenceItBreaks(t *testing.T) {
	cause := &ownedError{installOwner, errors.New(`install step "switch" exited 1`)}
	owner := blockedIn("TestC4GenuineLiveRebuild", cause)
	assert.Equal(t, `the install failed: install step "switch" exited 1`, owner.failed, "the owner fails, naming it")
	other := blockedIn("TestC1SecretsRepoSplit/the_rebuilt_system_is_byte-identical_to_the_running_one", cause)
	assert.Empty(t, other.failed)
	assert.Equal(t, `cannot judge: the install failed: install step "switch" exited 1 (TestC4GenuineLiveRebuild fails on it)`, other.skipped,
		"a sentence of another test skips, naming the cause and who fails on it")
	unowned := blockedIn("TestC1SecretsRepoSplit", errors.New("git clone: could not resolve host"))
	assert.Contains(t, unowned.failed, "could not resolve host", "a cause nobody owns fails everyone")
}

func TestNotColdSaysWhy(t *testing.T) {
	r := &Run{Config: &config.Config{}}
	assert.Empty(t, r.NotCold(), "a run that created its machine is cold")
	r.stage.reused = true
	assert.Equal(t, "the machine was reused (SKIP_provision=1): not a cold run — not evidence", r.NotCold())
	r.Config.Stages.ReuseInstall = true
	assert.Contains(t, r.NotCold(), "and install.md not run again (SKIP_install=1)")
	none := &Run{Config: &config.Config{Stages: config.Stages{NoMachine: true}}}
	assert.Equal(t, "no machine was created (CCCI_MACHINE=none): not a cold run — not evidence", none.NotCold(),
		"a run that judged the repos alone is no evidence of a live rebuild")
}

func keptMachine(t *testing.T) *machine.Machine {
	s, priv, err := remote.NewKey()
	require.NoError(t, err)
	return &machine.Machine{Name: "ccci-r1", Project: "terraform-ci", Type: "container", Image: "ccci-blank", RunID: "r1",
		IP: "10.99.0.30", HostKey: s.PublicKey(), Signer: s, Key: priv, User: "root", CreatedAt: time.Now().UTC().Truncate(time.Second),
		Memory: 4 << 30, UUID: "uuid-1"}
}

// The state file is input: what SKIP_teardown writes, SKIP_provision reads
// back, and anything else is refused naming the file and the field.
func TestTheStateFileRoundTripsAndRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	mc := keptMachine(t)
	inst := &keptInstall{RunID: "r1", Record: &installdoc.Record{Doc: "docs/install.md", Manifest: "abc", Complete: true},
		Ended: time.Now().UTC().Truncate(time.Second), Contacts: []Contact{{Step: "clone-base", Dest: egress.Dest{IP: "10.99.0.1", Port: 8418}}}}
	require.NoError(t, saveState(path, mc, inst))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	got, gotInst, err := loadState(path)
	require.NoError(t, err)
	assert.Equal(t, mc.UUID, got.UUID)
	assert.Equal(t, mc.HostKey.Marshal(), got.HostKey.Marshal())
	assert.Equal(t, mc.Signer.PublicKey().Marshal(), got.Signer.PublicKey().Marshal())
	assert.Equal(t, inst, gotInst)

	for _, c := range []struct {
		name, edit, want string
	}{
		{"no uuid", `"uuid": "uuid-1"`, "field uuid is required"},
		{"a key file elsewhere", "", `field key_file "/etc/shadow" is not`},
		{"an install without its record", `"record": {`, "field install has no record"},
		{"not JSON", `{`, "invalid character"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			bad := filepath.Join(dir, c.name+".json")
			require.NoError(t, os.MkdirAll(filepath.Dir(keyFile(bad)), 0o700))
			kb, err := os.ReadFile(keyFile(path))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(keyFile(bad), kb, 0o600))
			text := replace(string(b), `"key_file": "`+keyFile(path)+`"`, `"key_file": "`+keyFile(bad)+`"`)
			switch c.name {
			case "no uuid":
				text = replace(text, c.edit, `"uuid": ""`)
			case "a key file elsewhere":
				text = replace(text, `"key_file": "`+keyFile(bad)+`"`, `"key_file": "/etc/shadow"`)
			case "an install without its record":
				text = replace(text, `"record": {`, `"nothing": {`)
			default:
				text = "{" + text
			}
			require.NoError(t, os.WriteFile(bad, []byte(text), 0o600))
			_, _, err = loadState(bad)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), bad, "names the file")
		})
	}
	link := filepath.Join(dir, "link.json")
	require.NoError(t, os.Symlink(path, link))
	_, _, err = loadState(link)
	assert.Error(t, err, "a symlinked state file is refused")
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func replace(s, old, new string) string { return strings.Replace(s, old, new, 1) }

// Teardown starts a reserve before go test's -timeout, so that it ends
// before go test kills the process: the reserve configured, or a third of a
// short -timeout, but never less than the longest wait teardown makes.
func TestTeardownStartsTheReserveBeforeTheTimeout(t *testing.T) {
	started := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := &Run{Started: started, Config: &config.Config{Timeouts: config.Timeouts{TeardownReserve: 90 * time.Second}}}
	for _, c := range []struct {
		timeout, startsAfter time.Duration
	}{
		{40 * time.Minute, 40*time.Minute - 90*time.Second},
		{3 * time.Minute, 2 * time.Minute}, // a third of it: the reserve would leave the run nothing
		{2 * time.Minute, time.Minute},     // a third would not hold deleting a machine (bounds.Destroy)
	} {
		assert.Equal(t, started.Add(c.startsAfter), r.deadline(c.timeout), "-timeout %s", c.timeout)
	}
	assert.True(t, r.deadline(0).IsZero(), "no -timeout, no deadline")
}

// The run and its guardian write evidence through one writer: signed when
// CCCI_SIGNING_KEY loads, and written all the same (unsigned, with the
// error) when it does not, so that a run that cannot start leaves evidence.
func TestEvidenceIsSignedWhenTheKeyLoadsAndWrittenWhenItDoesNot(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	key := filepath.Join(dir, "runner")
	require.NoError(t, os.WriteFile(key, pem.EncodeToMemory(block), 0o600))
	quiet := func(string, ...any) {}

	review := filepath.Join(dir, "signed", "REVIEW.md")
	require.NoError(t, os.MkdirAll(filepath.Dir(review), 0o755))
	w, err := newEvidenceWriter(review, key, quiet)
	require.NoError(t, err)
	require.NoError(t, w.write(evidence.Entry{RunID: "r1", Outcome: "pass"}))
	es, err := evidence.Read(evidence.PathsFor(review).JSONL)
	require.NoError(t, err)
	require.Len(t, es, 1)
	assert.NotEmpty(t, es[0].Signer, "signed by the runner's key")
	assert.NotEmpty(t, es[0].Harness, "the writer names the harness")

	require.NoError(t, os.Chmod(key, 0o644))
	review = filepath.Join(dir, "unsigned", "REVIEW.md")
	require.NoError(t, os.MkdirAll(filepath.Dir(review), 0o755))
	w, err = newEvidenceWriter(review, key, quiet)
	assert.ErrorContains(t, err, "readable by others")
	require.NoError(t, w.write(evidence.Entry{RunID: "r2", Outcome: "fail"}))
	es, err = evidence.Read(evidence.PathsFor(review).JSONL)
	require.NoError(t, err)
	require.Len(t, es, 1)
	assert.Empty(t, es[0].Signer)

	w, _ = newEvidenceWriter(filepath.Join(key, "REVIEW.md"), "", quiet) // under a file, not a directory
	assert.Error(t, w.write(evidence.Entry{RunID: "r3"}), "a lost entry is an error")
}

// A run killed mid-clone leaves its clones (and a deploy key) behind unless
// its guardian removes them: it does, for the temp directories the run told
// it of, and nothing else — not a path that is no run's, nor through a link.
func TestTheGuardianRemovesADeadRunsTempDirectories(t *testing.T) {
	t.Setenv(LeaseDirEnv, t.TempDir())
	root := t.TempDir()
	mk := func(name string) string {
		d := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(d, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(d, "deploy-key"), []byte("key"), 0o600))
		return d
	}
	clone, other := mk("ccci-target-123"), mk("someone-elses")
	link := filepath.Join(root, "ccci-link")
	require.NoError(t, os.Symlink(other, link))
	messages := "run r1 \ntmp " + clone + "\ntmp " + other + "\ntmp " + link + "\ntmp ccci-relative\n"

	assert.Equal(t, 0, guard(strings.NewReader(messages+"done\n")), "a run that ended cleans up itself")
	assert.DirExists(t, clone, "a live run's directory is its own to remove")

	assert.Equal(t, 0, guard(strings.NewReader(messages))) // the pipe closed: the run died
	assert.NoDirExists(t, clone, "the dead run's clone and key are removed")
	assert.FileExists(t, filepath.Join(other, "deploy-key"), "a directory that is no run's stays")
	assert.FileExists(t, filepath.Join(link, "deploy-key"), "a link is not followed")
}

// A run's guardian holds its lease for as long as it lives, and removes it
// when it is done: the lab's sweep proves a run dead by a lease file
// nobody holds, whatever PID namespace the guardian is in.
func TestTheGuardianHoldsTheRunsLease(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(LeaseDirEnv, dir)
	lease := filepath.Join(dir, "r20261207t030000-abcdef.lease")
	in, w := io.Pipe()
	done := make(chan int)
	go func() { done <- guard(in) }()
	_, err := io.WriteString(w, "run r20261207t030000-abcdef \n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := os.Stat(lease); return err == nil }, 5*time.Second, 10*time.Millisecond)
	f, err := os.Open(lease)
	require.NoError(t, err)
	defer f.Close()
	assert.ErrorIs(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), syscall.EWOULDBLOCK, "the guardian holds it")
	_, err = io.WriteString(w, "done\n")
	require.NoError(t, err)
	assert.Equal(t, 0, <-done)
	assert.NoFileExists(t, lease, "a finished run leaves no lease")
}

// scriptedTraffic is what a machine sends, look by look.
type scriptedTraffic [][]egress.Dest

func (s *scriptedTraffic) New(context.Context) ([]egress.Dest, error) {
	if len(*s) == 0 {
		return nil, nil
	}
	next := (*s)[0]
	*s = (*s)[1:]
	return next, nil
}

// What the machine sends is read from its start to its teardown: before the
// install, during each step, when C3 judges, and once more just before the
// machine is destroyed — where a place it was not allowed to reach after C3
// judged (a job the last block left running) fails the run, naming it.
func TestTrafficIsJudgedUntilTheTeardown(t *testing.T) {
	repo := "http://10.99.0.1:8418/good/cc-ci.git"
	r := &Run{ctx: context.Background(), Config: &config.Config{Expect: config.Expectations{Egress: "nft"},
		Target: config.Target{BaseRepoURL: repo, SecretsRepoURL: repo}}}
	git := egress.Dest{IP: "10.99.0.1", Port: 8418}
	late := egress.Dest{IP: "10.99.0.1", Port: 8420}
	r.traffic.obs = &scriptedTraffic{nil, {git}, nil, {late, git}}
	r.sawUntil(r.ctx, egress.Boot)
	r.sawUntil(r.ctx, "clone-base")
	seen, err := r.Egress()
	require.NoError(t, err)
	assert.Equal(t, []Contact{{Step: "clone-base", Dest: git}}, seen, "what C3 judges")
	err = r.egressAtTeardown()
	require.Error(t, err, "a place reached after C3 judged fails the run")
	assert.Contains(t, err.Error(), "the machine (after the install's last step) reached 10.99.0.1:8420, which is neither of the two repos")
	assert.NotContains(t, err.Error(), "8418", "the repo is allowed")

	quiet := &Run{ctx: context.Background(), Config: r.Config}
	quiet.traffic.obs = &scriptedTraffic{{git}, {git}}
	_, err = quiet.Egress()
	require.NoError(t, err)
	assert.NoError(t, quiet.egressAtTeardown(), "only the repos: nothing to fail")

	notJudged := &Run{ctx: context.Background(), Config: r.Config}
	notJudged.traffic.obs = &scriptedTraffic{{late}}
	assert.NoError(t, notJudged.egressAtTeardown(), "a run in which C3 did not judge (-run TestC4) leaves the verdict to C3")

	unobserved := &Run{ctx: context.Background(), Config: r.Config}
	_, err = unobserved.Egress()
	assert.ErrorContains(t, err, "no observer was attached", "CCCI_EGRESS=nft with nothing observing is no pass")
}

// TLS is asked at the throwaway: unset, CCCI_TLS_ADDR is its own port 443;
// set to another instance's address (a reference behind the gateway), the
// check that would ask there fails, naming that instance.
// fakeIncus is the Incus fake with one image and project, a client of it,
// and a machine manager that creates there (guardrails g).
func fakeIncus(t *testing.T) (*incustest.Server, *incus.Client, config.Guardrails, *machine.Manager) {
	t.Helper()
	f, err := incustest.New(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(f.Close)
	f.Images["img"] = incustest.Image{}
	f.Projects["p"] = true
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	g := config.Guardrails{AllowedProjects: []string{"p"}, RAMCap: 12 << 30, DefaultInstanceMemory: 1 << 30, MaxMachines: 2, LabelPrefix: "ccci"}
	m := &machine.Manager{Client: c, Labels: machine.Labels{Prefix: "ccci"}, RunID: machine.NewRunID(time.Now()), SSHPort: f.SSHPort(), Log: t.Logf, Guard: g}
	return f, c, g, m
}

// fakeMachine is the machine settings fakeIncus creates with.
var fakeMachine = config.MachineSettings{Project: "p", Image: "img", InstanceType: incus.Container, Memory: 1 << 30, SSHUser: "root", SSHKeyVia: machine.KeyViaFile}

func TestTLSIsAskedAtTheThrowawayOnly(t *testing.T) {
	_, c, g, m := fakeIncus(t)
	spec := machine.Spec{MachineSettings: fakeMachine, TTL: time.Hour, BootTimeout: 8 * time.Second}
	ours, err := m.Create(context.Background(), spec)
	require.NoError(t, err)
	_, err = m.Create(context.Background(), spec) // the other instance: its address is 127.0.0.1 too (the fake's)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.DestroyAll(context.Background()) })

	r := &Run{ctx: context.Background(), Incus: c, Config: &config.Config{Guardrails: g}}
	r.stage.machine = ours
	assert.Equal(t, "127.0.0.1:443", r.tlsAddr(t), "unset: the throwaway's own port 443")

	r.Config.Target.TLSAddr = "127.0.0.1:8443"
	o := &outcome{name: "TestC2CertInGit"}
	done := make(chan struct{})
	go func() { defer close(done); r.tlsAddr(o) }()
	<-done
	assert.Contains(t, o.failed, "CCCI_TLS_ADDR 127.0.0.1:8443 is the address of p/"+m.Created()[1].Name+", not of the throwaway "+ours.Name)
}

// An install that will be refused before its first step — here, an
// operator step the harness does not do — gets no machine: its owner (C3)
// fails naming the step, a test that needs the machine skips naming it, and
// Incus was asked to create nothing.
func TestARefusedInstallGetsNoMachine(t *testing.T) {
	f, c, g, m := fakeIncus(t)
	cfg := &config.Config{Guardrails: g, Machine: fakeMachine}
	cfg.Target.BaseRepoURL, cfg.Target.SecretsRepoURL, cfg.Target.AgeKeyFile = "http://git/base", "http://git/secrets", "/keys/age.txt"
	cfg.Target.AgeKeyPath = "/var/lib/sops-nix/key.txt"
	doc, err := installdoc.Parse("docs/install.md", []byte("# Install\n\n```sh {step=drop-cert runs=operator}\nscp fullchain.pem root@${MACHINE}:/var/lib/ci-certs/live/\n```\n"),
		map[string]string{"MACHINE": "MACHINE-ADDRESS"})
	require.NoError(t, err)
	r := &Run{ctx: context.Background(), Incus: c, Config: cfg, Started: time.Now(), Manager: m}
	r.tgt.once.Do(func() { r.tgt.view = &TargetView{Doc: doc} }) // the target as loaded

	in := func(name string, ask func(testing.TB)) *outcome {
		o := &outcome{name: name}
		done := make(chan struct{})
		go func() { defer close(done); ask(o) }()
		<-done
		return o
	}
	needsMachine := func(t testing.TB) { r.Machine(t) }
	needsInstall := func(t testing.TB) { r.InstallSucceeded(t) }
	owner := in("TestC3AllSecretsInGitOneException/with_only_the_age_key_pushed,_the_install_succeeds", needsInstall)
	assert.Contains(t, owner.failed, RefusedBeforeMachine)
	assert.Contains(t, owner.failed, `operator step "drop-cert"`, "the install's own sentence fails, naming the step")
	for _, name := range []string{"TestMachineIsBrandNewAndBlank", "TestC3AllSecretsInGitOneException/every_required_secret_is_in_git,_encrypted"} {
		other := in(name, needsMachine)
		assert.Empty(t, other.failed, "%s needed only the machine: it could not judge", name)
		assert.Contains(t, other.skipped, "cannot judge: "+RefusedBeforeMachine, "%s skips, saying why", name)
		assert.Contains(t, other.skipped, `operator step "drop-cert"`)
	}
	c4 := in("TestC4GenuineLiveRebuild", needsInstall)
	assert.Contains(t, c4.skipped, `operator step "drop-cert"`, "C4 skips: the step is C3's")
	for _, req := range f.Requests() {
		assert.NotContains(t, req, "POST /1.0/instances", "no instance was asked for")
	}
	assert.Empty(t, r.Manager.Created())
	assert.ErrorContains(t, r.blockingError(), RefusedBeforeMachine, "the run fails on it")
}
