package testrun

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/buildinfo"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/target"
)

// record is what the run will write as evidence: each test's outcome, the
// facts the tests noted, why the run was cut short. It is its own stage:
// safe from any goroutine (a test, the signal handler, the deadline), and
// it knows nothing of machines or targets; appendEvidence adds those.
type record struct {
	mu          sync.Mutex
	tests       map[string]*evidence.Test
	facts       map[string]string
	interrupted string    // set by the signal or deadline handler before it tears down
	once        sync.Once // concurrent writers wait until the entry is on disk
	writeErr    error     // the entry could not be written: the run cannot pass
}

// interrupt records why the run is being cut short (the first reason wins).
func (rec *record) interrupt(why string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.interrupted == "" {
		rec.interrupted = why
	}
}

// interruptedBy is why the run was cut short, or "".
func (rec *record) interruptedBy() string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.interrupted
}

// track records a test's (or a sentence's) outcome when it ends.
func (rec *record) track(t testing.TB) {
	name := t.Name()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.tests == nil {
		rec.tests = map[string]*evidence.Test{}
	}
	if _, ok := rec.tests[name]; ok {
		return
	}
	rt := &evidence.Test{Name: name, Result: "running"}
	rec.tests[name] = rt
	start := time.Now()
	t.Cleanup(func() {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rt.Seconds = time.Since(start).Seconds()
		switch {
		case t.Skipped():
			rt.Result = "skip"
		case t.Failed():
			rt.Result = "fail"
		default:
			rt.Result = "pass"
		}
	})
}

// note keeps a fact, already redacted, under key.
func (rec *record) note(key, fact string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.facts == nil {
		rec.facts = map[string]string{}
	}
	rec.facts[key] = fact
}

// entry is the evidence entry as far as the record knows it: the outcome
// (a fail if the run was interrupted), each test, the facts.
func (rec *record) entry(runID, outcome string) evidence.Entry {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	e := evidence.Entry{RunID: runID, Outcome: outcome, Interrupted: rec.interrupted, Facts: maps.Clone(rec.facts)}
	if e.Interrupted != "" {
		e.Outcome = "fail"
	}
	for _, t := range rec.tests {
		e.Tests = append(e.Tests, *t)
	}
	return e
}

// writeOnce runs write the first time it is called; every caller returns
// its error, and only once it has returned.
func (rec *record) writeOnce(write func() error) error {
	rec.once.Do(func() { rec.writeErr = write() })
	return rec.writeErr
}

// interrupt records why the run is being cut short.
func (r *Run) interrupt(why string) { r.rec.interrupt(why) }

// Sentence runs one sentence of the definition of done as a subtest and
// records its outcome in the evidence, like a top-level test's.
func (r *Run) Sentence(t *testing.T, name string, check func(t *testing.T)) bool {
	return t.Run(name, func(t *testing.T) {
		if r != nil {
			r.rec.track(t)
		}
		check(t)
	})
}

// Note adds a fact to this run's evidence (a fingerprint, an arithmetic, a
// count). It is redacted first; never pass it secret material anyway.
func (r *Run) Note(key, format string, args ...any) {
	if r == nil {
		return
	}
	r.rec.note(key, r.Redact.Redact(fmt.Sprintf(format, args...)))
}

// writeEvidence appends this run's entry once, after teardown, whichever
// path gets there first (the end of the run, an interrupt, the deadline).
// Every caller returns only when the entry is written.
func (r *Run) writeEvidence(outcome string) error {
	return r.rec.writeOnce(func() error { return r.appendEvidence(outcome) })
}

// appendEvidence writes the run's entry: what it saw, what it created, how
// that ended.
func (r *Run) appendEvidence(outcome string) error {
	if r.evidence == nil { // no configuration: nowhere to write
		return nil
	}
	e := r.rec.entry(r.ID, outcome)
	e.NotEvidence = r.NotCold()
	if r.Incus != nil {
		e.Incus, e.IncusCert = r.Incus.Endpoint, r.IncusCert
	}
	if r.Manager != nil {
		for _, mc := range r.Manager.Created() {
			e.Machine, e.Image = mc.Project+"/"+mc.Name, mc.Image+" ("+mc.Type+")"
		}
	}
	if r.Config.Target.BaseRepoURL != "" {
		e.BaseRepo = evidence.RepoURL(r.Config.Target.BaseRepoURL)
	}
	if v := r.tgt.view; v != nil {
		e.BaseCommit, e.SecretsCommit, e.InstallDoc = v.Repos.BaseCommit, v.Repos.SecretsCommit, v.Doc.Manifest
		if b, err := target.ReadBase(v.Repos, "flake.lock"); err == nil {
			s := sha256.Sum256([]byte(b))
			e.FlakeLock = hex.EncodeToString(s[:])
		}
	}
	switch {
	case e.Machine == "":
		e.Destroy = "no machine was created"
	case r.stage.teardownErr != nil:
		e.Destroy = "FAILED: " + r.Redact.Redact(r.stage.teardownErr.Error())
	case r.Config.Stages.KeepMachine:
		e.Destroy = "kept (SKIP_teardown=1)"
	default:
		e.Destroy = evidence.DestroyedAndGone
	}
	return r.evidence.write(e)
}

// evidenceWriter is the one place an entry is appended to REVIEW.md and its
// JSON lines, signed with CCCI_SIGNING_KEY when one is set: the run and its
// guardian both write through it.
type evidenceWriter struct {
	paths  evidence.Paths
	signer ssh.Signer // nil: the entry is written unsigned
	log    func(format string, args ...any)
}

// newEvidenceWriter loads the signing key, if one is configured. A key that
// cannot be loaded is an error, and the writer still writes, unsigned: the
// evidence of a run that cannot start is written all the same.
func newEvidenceWriter(reviewFile, signingKey string, log func(string, ...any)) (*evidenceWriter, error) {
	w := &evidenceWriter{paths: evidence.PathsFor(reviewFile), log: log}
	if signingKey == "" {
		return w, nil
	}
	s, err := evidence.LoadSigner(signingKey)
	if err != nil {
		return w, err
	}
	w.signer = s
	return w, nil
}

// write appends the entry; a run whose evidence is lost has proved nothing
// anyone can check, so the error fails the run.
func (w *evidenceWriter) write(e evidence.Entry) error {
	e.Harness = buildinfo.Harness()
	written, err := evidence.Append(w.paths, e, w.signer)
	if err != nil {
		w.log("FAIL: evidence: could not write %s: %v — the run cannot pass without its evidence", w.paths.Markdown, err)
		return fmt.Errorf("evidence: %w", err)
	}
	signed := "unsigned: CCCI_SIGNING_KEY is not set"
	if written.Signer != "" {
		signed = "signed by " + written.Signer
	}
	w.log("evidence: run %s appended to %s and %s (hash %.16s, %s)", e.RunID, w.paths.Markdown, w.paths.JSONL, written.Hash, signed)
	return nil
}

// WriteLiveRecord writes this run's live-rebuild record for the reviewer to
// commit into the target's D8 evidence: under CCCI_OUT_DIR, never into a
// clone of the target. An existing file or a symlink in its place is refused.
func (r *Run) WriteLiveRecord(text string) (string, error) {
	if err := os.MkdirAll(r.Config.Evidence.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("live record: %w", err)
	}
	p := filepath.Join(r.Config.Evidence.OutDir, "d8-live-"+r.ID+".md")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return "", fmt.Errorf("live record: %w", err)
	}
	if _, err := f.WriteString(r.Redact.Redact(text)); err != nil {
		f.Close()
		return "", fmt.Errorf("live record: %w", err)
	}
	return p, f.Close()
}
