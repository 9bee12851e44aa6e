package testrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// The guardian is a second process, started before anything is created, that
// outlives the test process. The test process tells it each instance before
// asking Incus for it ("track project/name"), and at the end either "done"
// (torn down) or "keep" (SKIP_teardown). If its stdin closes without either —
// the test process panicked, was killed with SIGKILL, or exited before its
// teardown — it destroys every tracked instance that still carries the
// harness label. It ignores SIGINT/SIGTERM so a Ctrl-C to the process group
// cannot stop it before it has done its job, and SIGPIPE so that a closed
// output (`go test … | head`) only silences its log lines.
//
// The role is given on the command line, never through the environment: a
// variable inherited from the caller would turn the whole suite into a
// guardian that exits 0 without running a test.
const guardianArg = "-ccci.guardian-process"

// isGuardian reports whether this process was started as a run's guardian.
func isGuardian(args []string) bool { return len(args) == 2 && args[1] == guardianArg }

type guardian struct {
	mu  sync.Mutex
	w   io.WriteCloser
	cmd *exec.Cmd
}

func startGuardian() (*guardian, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("guardian: find own executable: %w", err)
	}
	cmd := exec.Command(self, guardianArg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("guardian: start: %w", err)
	}
	return &guardian{w: w, cmd: cmd}, nil
}

func (g *guardian) send(line string) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, err := io.WriteString(g.w, line+"\n")
	return err
}

// Track tells the guardian an instance before Incus is asked for it.
func (g *guardian) Track(project, name string) error { return g.send("track " + project + "/" + name) }

// TempDir tells the guardian a directory of the run's own on this host (a
// target's clones, a deploy key): it removes it if the run dies.
func (g *guardian) TempDir(dir string) error { return g.send("tmp " + dir) }

// Pin tells the guardian the uuid of an instance once Incus has created it:
// it will destroy only that instance, not another under the same name.
func (g *guardian) Pin(project, name, uuid string) error {
	return g.send("pin " + project + "/" + name + " " + uuid)
}

// release ends the guardian with "done" or "keep" and waits for it.
func (g *guardian) release(word string) {
	if g == nil {
		return
	}
	_ = g.send(word)
	g.w.Close()
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(bounds.Kill):
		_ = g.cmd.Process.Kill()
	}
}

// runGuardian is the guardian process's main: it returns its exit code.
func runGuardian() int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	return guard(os.Stdin)
}

func guardLog(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[guardian %s] "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

// guard reads the run's messages until "done" or "keep"; if they end
// without either, the run died: it removes the run's temp directories,
// destroys its tracked instances and writes its evidence.
func guard(in io.Reader) int {
	logf := guardLog
	var tracked, temps []string
	uuids := map[string]string{}
	var runID, review string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		word, arg, _ := strings.Cut(sc.Text(), " ")
		switch word {
		case "run":
			runID, review, _ = strings.Cut(arg, " ")
			release := holdLease(runID, logf)
			defer release()
		case "track":
			tracked = append(tracked, arg)
		case "pin":
			id, uuid, _ := strings.Cut(arg, " ")
			uuids[id] = uuid
		case "tmp":
			temps = append(temps, arg)
		case "done", "keep":
			return 0
		}
	}
	for _, dir := range temps {
		removeRunTemp(dir, logf)
	}
	entry := evidence.Entry{RunID: runID, Outcome: "fail",
		Interrupted: "the test process died before its teardown (panic, kill -9, or exit)", Destroy: "no machine was created"}
	cfg, cfgErr := config.Load()
	defer func() {
		if review == "" {
			return
		}
		signingKey := ""
		if cfgErr == nil {
			signingKey = cfg.Evidence.SigningKey
		}
		w, err := newEvidenceWriter(review, signingKey, logf)
		if err != nil {
			logf("evidence: unsigned: %v", err)
		}
		_ = w.write(entry) // a write error is logged; the run has failed either way
	}()
	if len(tracked) == 0 {
		return 0
	}
	entry.Machine, entry.Destroy = strings.Join(tracked, ", "), "FAILED: the guardian could not reach Incus"
	logf("the test process ended without teardown: destroying %s", strings.Join(tracked, ", "))
	if cfgErr != nil {
		logf("cannot load config, instances may be left: %v", cfgErr)
		return 1
	}
	c, err := incus.New(cfg.Incus.Config(cfg.Incus.Transport))
	if err != nil {
		logf("cannot reach Incus, instances may be left: %v", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.TeardownReserve)
	defer cancel()
	code := 0
	entry.Incus, entry.Destroy = c.Endpoint, "destroyed by the guardian: "+strings.Join(tracked, ", ")
	if cfg.Expect.Egress == "nft" {
		if err := egress.Drop(ctx, runID); err != nil {
			logf("%v", err)
		}
	}
	labels := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	for _, id := range tracked {
		project, name, _ := strings.Cut(id, "/")
		claim := machine.Claim{Project: project, Name: name, RunID: runID, UUID: uuids[id]}
		if err := machine.DestroyClaimed(ctx, c, cfg.Guardrails, labels, claim, logf); err != nil {
			logf("%v", err)
			entry.Destroy = "FAILED: " + err.Error()
			code = 1
		}
	}
	return code
}

// runTempPrefix starts the name of every temp directory a run makes.
const runTempPrefix = "ccci-"

// removeRunTemp removes a temp directory the run told of: only an absolute,
// clean path whose name is a run's, and only a directory (never through a
// symlink).
func removeRunTemp(dir string, logf func(string, ...any)) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || !strings.HasPrefix(filepath.Base(dir), runTempPrefix) {
		logf("not removing %q: not a run's temp directory", dir)
		return
	}
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return
	case err != nil || !st.IsDir():
		logf("not removing %s: not a directory", dir)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		logf("temp directory %s: %v", dir, err)
		return
	}
	logf("removed the dead run's temp directory %s", dir)
}

// LeaseDirEnv names the directory of run leases (default DefaultLeaseDir).
// A run's guardian holds an exclusive flock(2) on <dir>/<run-id>.lease for
// as long as it lives, and removes the file when it is done: a lease file
// that nobody holds is a run that died with its guardian — what the lab's
// sweep (lab/lab.sh) may clean up, and only that. A lock is seen whatever
// PID namespace its holder is in, which a process list is not.
const (
	LeaseDirEnv     = "CCCI_LEASE_DIR"
	DefaultLeaseDir = "/run/ccci-leases"
)

var leaseName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// holdLease takes the run's lease and returns its release (which removes
// it). Without one the run is only invisible to the sweep, which then
// leaves its instances to the reaper's TTL: logged, not fatal.
func holdLease(runID string, logf func(string, ...any)) func() {
	if !leaseName.MatchString(runID) {
		logf("lease: %q is no run id: none taken", runID)
		return func() {}
	}
	dir := os.Getenv(LeaseDirEnv)
	if dir == "" {
		dir = DefaultLeaseDir
	}
	path := filepath.Join(dir, runID+".lease")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		logf("lease: %v: none taken (the lab's sweep will leave this run's instances to the reaper)", err)
		return func() {}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err == nil {
		if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
		}
	}
	if err != nil {
		logf("lease %s: %v: none taken", path, err)
		return func() {}
	}
	return func() {
		_ = os.Remove(path) // before the lock goes: a file nobody holds means a dead run
		f.Close()
	}
}
