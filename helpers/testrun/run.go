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
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/target"
)

// EnableEnv must be "1" for acceptance tests to run (like terraform's TF_ACC).
const EnableEnv = "CCCI_ACCEPTANCE"

// Run is one acceptance run: a thin façade over its stages, each a field
// with its own file, so a reader finds where a run creates, installs,
// judges, records and destroys without reading the others.
//
//	run.go        lifecycle: Main, signals, the -timeout deadline, Require
//	machine.go    stage:    the one machine, created on first use, torn down once
//	target.go     tgt:      the target's repos, install.md and secrets, from git
//	install.go    install:  install.md followed once on the machine
//	declared.go   decl:     what the target declares, evaluated on the machine
//	converged.go  conv:     what C4 saw converge, for later checks to look again
//	owners.go     which test owns a failure every other check depends on
//	record.go     rec, evidence: each test's outcome, facts, the evidence entry
//	guardian.go   guardian: the process that tears down if this one dies
//	state.go      the kept machine's state file (SKIP_teardown, SKIP_provision)
type Run struct {
	ID      string
	Started time.Time
	Config  *config.Config
	Incus   *incus.Client
	Redact  *redact.Redactor
	Manager *machine.Manager
	// IncusCert is the Incus server's certificate fingerprint, as it
	// reported it: a D8 citation is bound to the server, not only its address.
	IncusCert string

	ctx      context.Context // cancelled on SIGINT/SIGTERM
	setup    error           // why the run could not start; every test fails with it
	guardian *guardian
	key      *target.AgeKey // the bootstrap key, when a target is configured
	stage    machineStage
	tgt      targetState
	install  installState
	traffic  egressState    // what the machine sent (CCCI_EGRESS=nft)
	conv     convergedState // what C4 saw converge, for its last look
	decl     declaredState  // what the target declares, read on the machine
	rec      record
	evidence *evidenceWriter // nil until the configuration is loaded
	local    localFiles
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
	if r.rec.interruptedBy() != "" {
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
	srv, err := c.Server(ctx)
	if err != nil {
		return fmt.Errorf("Incus API at %s: %w", c.Endpoint, err)
	}
	r.Incus, r.IncusCert = c, srv.Environment.CertificateFingerprint
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
		Tracker: r.guardian, SSHPort: cfg.Machine.SSHPort}
	if cfg.Expect.Egress == "nft" {
		r.Manager.Watch = r.watchNICs
	}
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
	r.rec.track(t)
	if r.setup != nil {
		t.Fatalf("the run could not start, nothing was created: %v", r.setup)
	}
}

// NotCold says why this run is not a cold run — the machine was reused
// (SKIP_provision=1), and perhaps not installed by it (SKIP_install=1) — or
// "" for a cold run. Such a run's checks are for debugging: its evidence
// says it is not evidence, and no D8 citation accepts it.
func (r *Run) NotCold() string {
	if r.Config != nil && r.Config.Stages.NoMachine {
		return "no machine was created (CCCI_MACHINE=none): not a cold run — not evidence"
	}
	if !r.stage.reused {
		return ""
	}
	why := "the machine was reused (SKIP_provision=1)"
	if r.Config.Stages.ReuseInstall {
		why += " and install.md not run again (SKIP_install=1)"
	}
	return why + ": not a cold run — not evidence"
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

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[harness %s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// injectFault panics at a named point when CCCI_FAULT says so: the harness's
// own tests use it to prove a panicking check still tears down and leaves
// evidence. Never set it otherwise.
func injectFault(point string) {
	if os.Getenv("CCCI_FAULT") == point {
		panic("injected fault (CCCI_FAULT=" + point + ")")
	}
}

// hangFault blocks a check at a named point until the run is cut short
// (CCCI_FAULT=hang:…): a check stuck in its own work, which only go test's
// -timeout deadline ends. Never set it otherwise.
func hangFault(ctx context.Context, point string) {
	if os.Getenv("CCCI_FAULT") == point {
		<-ctx.Done()
	}
}
