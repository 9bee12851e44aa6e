package testrun

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/buildinfo"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/target"
)

// record is what the run will write as evidence.
type record struct {
	mu          sync.Mutex
	tests       map[string]*evidence.Test
	facts       map[string]string
	interrupted string    // set by the signal or deadline handler before it tears down
	once        sync.Once // concurrent writers wait until the entry is on disk
	writeErr    error     // the entry could not be written: the run cannot pass
}

// interrupt records why the run is being cut short.
func (r *Run) interrupt(why string) {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	if r.rec.interrupted == "" {
		r.rec.interrupted = why
	}
}

// Sentence runs one sentence of the definition of done as a subtest and
// records its outcome in the evidence, like a top-level test's.
func (r *Run) Sentence(t *testing.T, name string, check func(t *testing.T)) bool {
	return t.Run(name, func(t *testing.T) {
		if r != nil {
			r.track(t)
		}
		check(t)
	})
}

// track records a test's (or a sentence's) outcome when it ends.
func (r *Run) track(t testing.TB) {
	name := t.Name()
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	if r.rec.tests == nil {
		r.rec.tests = map[string]*evidence.Test{}
	}
	if _, ok := r.rec.tests[name]; ok {
		return
	}
	rt := &evidence.Test{Name: name, Result: "running"}
	r.rec.tests[name] = rt
	start := time.Now()
	t.Cleanup(func() {
		r.rec.mu.Lock()
		defer r.rec.mu.Unlock()
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

// Note adds a fact to this run's evidence (a fingerprint, an arithmetic, a
// count). It is redacted first; never pass it secret material anyway.
func (r *Run) Note(key, format string, args ...any) {
	if r == nil {
		return
	}
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	if r.rec.facts == nil {
		r.rec.facts = map[string]string{}
	}
	r.rec.facts[key] = r.Redact.Redact(fmt.Sprintf(format, args...))
}

// writeEvidence appends this run's entry once, after teardown, whichever
// path gets there first (the end of the run, an interrupt, the deadline).
// Every caller returns only when the entry is written.
func (r *Run) writeEvidence(outcome string) error {
	r.rec.once.Do(func() { r.rec.writeErr = r.appendEvidence(outcome) })
	return r.rec.writeErr
}

// appendEvidence writes the entry; a run whose evidence is lost has proved
// nothing anyone can check, so an error here fails the run.
func (r *Run) appendEvidence(outcome string) error {
	if r.Config == nil {
		return nil
	}
	r.rec.mu.Lock()
	e := evidence.Entry{RunID: r.ID, Harness: buildinfo.Harness(), Outcome: outcome, Interrupted: r.rec.interrupted, Facts: r.rec.facts, NotEvidence: r.NotCold()}
	if e.Interrupted != "" {
		e.Outcome = "fail"
	}
	for _, t := range r.rec.tests {
		e.Tests = append(e.Tests, *t)
	}
	r.rec.mu.Unlock()
	if r.Incus != nil {
		e.Incus = r.Incus.Endpoint
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
		e.Destroy = "destroyed; API answers not found; no instance of this run remains (C6 cleanup PASS)"
	}
	paths := evidence.PathsFor(r.Config.Evidence.ReviewFile)
	written, err := evidence.Append(paths, e, r.signer)
	if err != nil {
		logf("FAIL: evidence: could not write %s: %v — the run cannot pass without its evidence", paths.Markdown, err)
		return fmt.Errorf("evidence: %w", err)
	}
	signed := "unsigned: CCCI_SIGNING_KEY is not set"
	if written.Signer != "" {
		signed = "signed by " + written.Signer
	}
	logf("evidence: run %s appended to %s and %s (hash %.16s, %s)", r.ID, paths.Markdown, paths.JSONL, written.Hash, signed)
	return nil
}
