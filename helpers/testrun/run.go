// Package testrun owns what one `go test ./acceptance` run shares: its
// configuration, its Incus client, and at most one throwaway machine, created
// lazily by the first test that needs it and destroyed when the run ends —
// normally, on SIGINT/SIGTERM, before go test's -timeout deadline, and (via a
// guardian process) even when the test process panics or is killed.
//
// Stages can be skipped in terratest's style:
//
//	SKIP_teardown=1   keep the machine; write its state to CCCI_STATE_FILE
//	SKIP_provision=1  reuse the machine from CCCI_STATE_FILE instead of creating one
package testrun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/target"
)

// EnableEnv must be "1" for acceptance tests to run (like terraform's TF_ACC).
const EnableEnv = "CCCI_ACCEPTANCE"

// Run is one acceptance run. What the tests use is exported; the rest is
// grouped by job, each in its own file: the machine's stages (here), the
// target and its install (target.go), the evidence (record.go), the
// guardian process (guardian.go), the kept machine's state (state.go).
type Run struct {
	ID      string
	Started time.Time
	Config  *config.Config
	Incus   *incus.Client
	Redact  *redact.Redactor
	Manager *machine.Manager

	ctx      context.Context // cancelled on SIGINT/SIGTERM
	setup    error           // why the run could not start; every test fails with it
	guardian *guardian
	key      *target.AgeKey // the bootstrap key, when a target is configured
	stage    machineStage
	tgt      targetState
	conv     convergedState // what C4 saw converge, for its last look
	decl     declaredState  // what the target declares, read on the machine
	rec      record
	evidence *evidenceWriter // nil until the configuration is loaded
	local    localFiles
}

// machineStage is the run's one machine, from provision to teardown.
type machineStage struct {
	mu          sync.Mutex // held while provisioning, so teardown waits for a creation in flight
	machine     *machine.Machine
	blank       BlankReport // what the machine held when it was handed to the tests
	err         error
	reused      bool         // SKIP_provision: the state file is ours to remove after teardown
	keptInstall *keptInstall // the install the kept machine had (SKIP_install)
	once        sync.Once    // teardown
	teardownErr error
}

// localFiles are the run's temp files on this host, removed after teardown.
type localFiles struct {
	mu       sync.Mutex
	cleanups []func()
	once     sync.Once
}

// add registers a cleanup (from any goroutine).
func (l *localFiles) add(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, f)
}

// Context is cancelled when the run is interrupted.
func (r *Run) Context() context.Context { return r.ctx }

// Main is TestMain's body: it returns the exit code. *dst is set before any
// test runs; it stays nil when acceptance tests are not enabled.
func Main(m *testing.M, dst **Run) int {
	if isGuardian(os.Args) {
		return runGuardian()
	}
	flag.Parse()
	if os.Getenv(EnableEnv) != "1" {
		return m.Run()
	}
	r := &Run{Started: time.Now().UTC(), Redact: &redact.Redactor{}}
	r.ID = machine.NewRunID(r.Started)
	*dst = r
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.ctx = ctx
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	if err := r.start(); err != nil {
		// Nothing was created. Tests still run so that each reports the cause.
		r.setup = err
		logf("run %s cannot start: %v", r.ID, err)
		r.Note("setup", "the run could not start, nothing was created: %v", err)
		code := m.Run()
		_ = r.writeEvidence("fail") // the run fails either way; a write error is logged
		return max(code, 1)
	}

	// An interrupt or the -timeout deadline tears down right away and exits:
	// the tests may be blocked anywhere, and go test would kill us unclean.
	go func() {
		sig := <-sigs
		logf("%s: tearing down before exit", sig)
		r.abort("interrupted by "+sig.String(), cancel, 130)
	}()
	if d := r.deadline(goTestTimeout()); !d.IsZero() {
		time.AfterFunc(time.Until(d), func() {
			logf("the -timeout deadline is near (teardown reserve %s): tearing down and failing the run", r.Config.Timeouts.TeardownReserve)
			r.abort("go test's -timeout deadline was near: torn down early", func() {}, 1)
		})
	}

	code := m.Run()
	if err := r.blockingError(); err != nil && code == 0 {
		// Every test that ran skipped on it (its owner did not run): still no pass.
		logf("FAIL: %v — the run cannot pass", err)
		r.Note("blocked", "%v", err)
		code = 1
	}
	if err := r.teardown(); err != nil && code == 0 {
		code = 1
	}
	if err := r.writeEvidence(map[bool]string{true: "pass", false: "fail"}[code == 0]); err != nil {
		code = max(code, 1)
	}
	if r.rec.interrupted != "" {
		code = max(code, 1) // interrupted during teardown, after every test passed
	}
	r.runCleanups()
	return code
}

// abort is the one way a run is cut short (a signal, the -timeout
// deadline): record why, cancel what can be, tear down, write the evidence,
// remove local files, exit. The tests may be blocked anywhere; go test
// would otherwise kill the process unclean.
func (r *Run) abort(why string, cancel context.CancelFunc, code int) {
	r.interrupt(why)
	cancel()
	r.teardown()
	_ = r.writeEvidence("fail") // exits non-zero either way; a write error is logged
	r.runCleanups()
	os.Exit(code)
}

// start validates configuration and reaches Incus before anything is created.
func (r *Run) start() error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	r.Config = cfg
	if r.evidence, err = newEvidenceWriter(cfg.Evidence.ReviewFile, cfg.Evidence.SigningKey, logf); err != nil {
		return err
	}
	c, err := incus.New(cfg.Incus.Config(cfg.Incus.Transport))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.ctx, bounds.Connect)
	defer cancel()
	if _, err := c.Server(ctx); err != nil {
		return fmt.Errorf("Incus API at %s: %w", c.Endpoint, err)
	}
	r.Incus = c
	if cfg.HasTarget() {
		// Checked before anything is created: a bad key is bad input.
		if r.key, err = target.LoadAgeKey(cfg.Target.AgeKeyFile, r.Redact); err != nil {
			return err
		}
	}
	g := cfg.Guardrails
	labels := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	// Orphans of earlier runs that died unclean: only expired, only labelled.
	if res, err := machine.Reap(ctx, c, g, labels, time.Now(), logf); err != nil {
		logf("reaper: %v", err)
	} else if len(res.Deleted) > 0 {
		logf("reaper removed expired orphans: %v", res.Deleted)
	}
	if r.guardian, err = startGuardian(); err != nil {
		return err
	}
	if err := r.guardian.send("run " + r.ID + " " + cfg.Evidence.ReviewFile); err != nil {
		return err
	}
	r.Manager = &machine.Manager{Client: c, Guard: g, Labels: labels, RunID: r.ID, Redact: r.Redact, Log: logf,
		Tracker: r.guardian}
	logf("run %s: Incus %s, project %s, image %s (%s), teardown reserve %s",
		r.ID, c.Endpoint, cfg.Machine.Project, cfg.Machine.Image, cfg.Machine.InstanceType, cfg.Timeouts.TeardownReserve)
	return nil
}

// goTestTimeout is go test's -timeout for this process (0: none).
func goTestTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	timeout, err := time.ParseDuration(f.Value.String())
	if err != nil || timeout <= 0 {
		return 0
	}
	return timeout
}

// deadline is when teardown must start so that it ends before go test's
// -timeout (0: none, so no deadline).
func (r *Run) deadline(timeout time.Duration) time.Time {
	if timeout == 0 {
		return time.Time{}
	}
	return r.Started.Add(timeout - r.Config.Timeouts.Reserve(timeout))
}

// TimeError: go test's -timeout cannot hold what the run may still take.
// Nothing was created; the message names the -timeout the run needs.
type TimeError struct {
	Timeout, Elapsed, Needed time.Duration
	Budget                   config.Budget
}

func (e *TimeError) Error() string {
	return fmt.Sprintf("go test's -timeout %s cannot hold this run: %s have passed and it may still take %s; "+
		"run with -timeout %s (or lower those bounds); nothing was created", e.Timeout, e.Elapsed.Round(time.Second), e.Budget, e.Needed)
}

// checkTime fails fast, before a machine is created, when the -timeout
// cannot hold the machine's boot, every install step, convergence, the
// settle window and the teardown reserve: cut in the middle, the run would
// prove nothing and say less.
func (r *Run) checkTime(steps int) error {
	timeout := goTestTimeout()
	if timeout == 0 {
		return nil
	}
	elapsed := time.Since(r.Started)
	b := r.Config.Timeouts.Budget(steps, timeout)
	if elapsed+b.Total <= timeout {
		return nil
	}
	return &TimeError{Timeout: timeout, Elapsed: elapsed, Budget: b, Needed: r.Config.Timeouts.TimeoutNeeded(steps, elapsed)}
}

// Require skips the test unless acceptance tests are enabled, and fails it
// when the run could not start.
func (r *Run) Require(t testing.TB) {
	t.Helper()
	if r == nil {
		t.Skipf("acceptance test: set %s=1 to run it against the lab (make lab-up) or the host in CCCI_CONFIG", EnableEnv)
	}
	r.track(t)
	if r.setup != nil {
		t.Fatalf("the run could not start, nothing was created: %v", r.setup)
	}
}

// NotCold says why this run is not a cold run — the machine was reused
// (SKIP_provision=1), and perhaps not installed by it (SKIP_install=1) — or
// "" for a cold run. Such a run's checks are for debugging: its evidence
// says it is not evidence, and no D8 citation accepts it.
func (r *Run) NotCold() string {
	if !r.stage.reused {
		return ""
	}
	why := "the machine was reused (SKIP_provision=1)"
	if r.Config.Stages.ReuseInstall {
		why += " and install.md not run again (SKIP_install=1)"
	}
	return why + ": not a cold run — not evidence"
}

// Machine returns the run's throwaway machine, creating it on first use
// (so `-run TestC7` does not boot one). A creation failure fails every test
// that needs the machine with the same error.
func (r *Run) Machine(t testing.TB) *machine.Machine {
	t.Helper()
	r.Require(t)
	r.stage.mu.Lock()
	defer r.stage.mu.Unlock()
	if r.stage.machine == nil && r.stage.err == nil {
		r.stage.machine, r.stage.err = r.provision()
	}
	if r.stage.err != nil {
		t.Fatalf("provision stage: %v", r.stage.err)
	}
	return r.stage.machine
}

// BlankReport is the machine's state as provisioned, before any test ran on it.
type BlankReport struct {
	Residue []string // cc-ci paths, units, age keys found (empty: blank)
	// The store before the install: every path in it, and the closure of
	// the system the machine was running (a blank NixOS image's own).
	Store, Baseline map[string]bool
	Err             error // the probe itself failed
}

// Blank returns what the machine held when it was provisioned.
func (r *Run) Blank(t testing.TB) BlankReport {
	t.Helper()
	r.Machine(t)
	hangFault(r.ctx, "hang:after-provision")
	return r.stage.blank
}

// observeBlank reads, read-only, whether the machine carries anything of cc-ci.
func (r *Run) observeBlank(mc *machine.Machine) {
	ctx, cancel := context.WithTimeout(r.ctx, bounds.Probe)
	defer cancel()
	cl, err := mc.SSH(ctx)
	if err != nil {
		r.stage.blank.Err = err
		return
	}
	defer cl.Close()
	b := &r.stage.blank
	b.Residue, b.Err = probe.Residue(ctx, cl, append(r.Config.Expect.BlankAbsent, r.Config.Target.AgeKeyPath), "cc-ci-*",
		[]string{"/root", "/etc", "/var/lib", "/srv", "/home", "/tmp"})
	if b.Err == nil {
		b.Store, b.Baseline, b.Err = storeBefore(ctx, cl)
	}
}

// storeBefore reads the store as the image has it, before the install.
func storeBefore(ctx context.Context, cl *remote.Client) (store, baseline map[string]bool, err error) {
	if store, err = probe.StoreNames(ctx, cl); err != nil {
		return nil, nil, err
	}
	baseline = map[string]bool{}
	sys, err := probe.CurrentSystem(ctx, cl)
	if err != nil || sys == "" {
		return store, baseline, err
	}
	closure, err := probe.Closure(ctx, cl, sys)
	for _, p := range closure {
		baseline[p] = true
	}
	return store, baseline, err
}

func (r *Run) provision() (*machine.Machine, error) {
	if r.Config.Stages.ReuseMachine {
		kept, inst, err := loadState(r.Config.Machine.StateFile)
		if err != nil {
			return nil, err
		}
		r.stage.keptInstall = inst
		// The state file is input like any other: it is believed only as far
		// as Incus confirms it (project, labels, uuid, host key).
		ctx, cancel := context.WithTimeout(r.ctx, bounds.Reuse)
		defer cancel()
		mc, err := r.Manager.Reuse(ctx, kept)
		if err != nil {
			return nil, fmt.Errorf("SKIP_provision: the machine in %s cannot be reused: %w", r.Config.Machine.StateFile, err)
		}
		r.stage.reused = true
		if err := errors.Join(r.guardian.Track(mc.Project, mc.Name), r.guardian.Pin(mc.Project, mc.Name, mc.UUID)); err != nil {
			return nil, err
		}
		logf("SKIP_provision: reusing %s/%s at %s from %s", mc.Project, mc.Name, mc.IP, r.Config.Machine.StateFile)
		r.observeBlank(mc)
		return mc, nil
	}
	if err := r.checkTime(r.installSteps()); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.Config.Timeouts.CreateTimeout+r.Config.Timeouts.BootTimeout)
	defer cancel()
	mc, err := r.Manager.Create(ctx, machine.SpecFrom(r.Config))
	if err != nil {
		return nil, err
	}
	r.observeBlank(mc)
	return mc, nil
}

// teardown destroys the run's machines once, or keeps them with SKIP_teardown.
func (r *Run) teardown() error {
	r.stage.once.Do(func() {
		if r.Manager == nil {
			return
		}
		r.stage.mu.Lock()
		defer r.stage.mu.Unlock()
		if r.Config.Stages.KeepMachine {
			if mc := r.stage.machine; mc != nil {
				if err := saveState(r.Config.Machine.StateFile, mc, r.installToKeep()); err != nil {
					r.stage.teardownErr = err
					logf("SKIP_teardown: %v (the machine %s/%s is kept, but cannot be reused)", err, mc.Project, mc.Name)
				} else {
					logf("SKIP_teardown: kept %s/%s at %s; state in %s (reuse with SKIP_provision=1)", mc.Project, mc.Name, mc.IP, r.Config.Machine.StateFile)
				}
			}
			r.guardian.release("keep")
			return
		}
		// A fresh context: the run's own may be cancelled by the interrupt we
		// are handling. Bounded by the reserve kept for it before -timeout.
		ctx, cancel := context.WithTimeout(context.Background(), r.Config.Timeouts.TeardownReserve)
		defer cancel()
		r.stage.teardownErr = errors.Join(r.Manager.DestroyAll(ctx), r.verifyCleanup(ctx))
		if r.stage.teardownErr != nil {
			logf("teardown: %v", r.stage.teardownErr)
			// Leave the guardian to try again from its own process.
			r.guardian.w.Close()
			return
		}
		if r.stage.reused {
			removeState(r.Config.Machine.StateFile)
		}
		r.guardian.release("done")
	})
	return r.stage.teardownErr
}

// runCleanups removes the run's local temp files, once, on every exit path
// the process controls.
// Concurrent callers (the end of the run and an interrupt) both wait until
// it is done, so neither exits half way.
func (r *Run) runCleanups() {
	r.local.once.Do(func() {
		r.local.mu.Lock()
		fs := r.local.cleanups
		r.local.mu.Unlock()
		for _, f := range fs {
			f()
		}
	})
}

// verifyCleanup is C6's second half: after teardown, no instance of this run
// (or of the run whose machine it reused) is left in any allowed project
// (asked of the API, not assumed).
func (r *Run) verifyCleanup(ctx context.Context) error {
	labels := machine.Labels{Prefix: r.Config.Guardrails.LabelPrefix}
	runs := map[string]bool{r.ID: true}
	for _, mc := range r.Manager.Adopted() {
		runs[mc.RunID] = true
	}
	var left []string
	for _, p := range r.Config.Guardrails.AllowedProjects {
		ins, err := r.Incus.Instances(ctx, p)
		if err != nil {
			return fmt.Errorf("C6 cleanup: list %s: %w", p, err)
		}
		for _, in := range ins {
			if runs[in.Config[labels.RunID()]] {
				left = append(left, p+"/"+in.Name)
			}
		}
	}
	if len(left) > 0 {
		logf("C6 cleanup: FAIL: %v still present after teardown", left)
		return fmt.Errorf("C6 cleanup: instances of run %s still present after teardown: %v", r.ID, left)
	}
	logf("C6 cleanup: PASS: no instance of run %s remains (%d created, %d reused)", r.ID, len(r.Manager.Created()), len(r.Manager.Adopted()))
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[harness %s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}
