package installdoc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// Pushed is one file the harness put on the machine from outside (an
// out-of-band transfer). Only a fingerprint of the content is kept.
type Pushed struct {
	Step        string `json:"step"`
	Path        string `json:"path"`
	Mode        string `json:"mode"`
	Fingerprint string `json:"fingerprint"`
}

// OperatorAction performs an operator step in the operator's place and reports
// every file it pushed.
type OperatorAction func(ctx context.Context) ([]Pushed, error)

// Executor runs machine blocks: the harness's SSH shell (*remote.Shell), or
// Incus exec when the lab installs its reference instance.
type Executor interface {
	Exec(ctx context.Context, block string, timeout time.Duration) (*remote.Result, error)
}

// Runner runs a document's blocks.
type Runner struct {
	Shell     Executor                  // machine blocks run here, one after another
	Operators map[string]OperatorAction // by step name
	// AgeKeyPath is where the age key goes: the age key step's commands
	// must push it there and do nothing else (AgeKeyCommandProblems).
	AgeKeyPath string
	Timeout    time.Duration // per block
	AfterStep  func(b Block) // if set, called after each block, whatever its outcome
	// BeforeStep, if set, is called before each block the machine runs, in
	// the same shell (the harness's own observation: it records, never
	// changes what a step does); its error fails the install.
	BeforeStep func(ctx context.Context, b Block) error
	Redact     *redact.Redactor
	Log        func(format string, args ...any)
}

// StepResult is the record of one block.
type StepResult struct {
	Step       string        `json:"step"`
	Runs       string        `json:"runs"`
	Line       int           `json:"line"`
	SHA256     string        `json:"sha256"`
	ExitCode   int           `json:"exit_code"`
	Duration   time.Duration `json:"duration_ns"`
	OutputTail string        `json:"output_tail"` // redacted
}

// Record is what an install did.
type Record struct {
	Doc      string       `json:"doc"`
	Manifest string       `json:"manifest"`
	Steps    []StepResult `json:"steps"`
	Pushed   []Pushed     `json:"pushed"`
	Complete bool         `json:"complete"` // every block ran and exited 0
}

// StepError is a block that failed: the target's install is wrong (or the
// machine is), and the message says which step, where, and how.
type StepError struct {
	Doc      string
	Step     string
	Line     int
	ExitCode int
	Tail     string
	Err      error
}

func (e *StepError) Error() string {
	if e.Err != nil { // the step did not run to an exit status: the cause (an operator action's -1 included)
		return fmt.Sprintf("install step %q (%s:%d): %v", e.Step, e.Doc, e.Line, e.Err)
	}
	return fmt.Sprintf("install step %q (%s:%d) exited %d: %s", e.Step, e.Doc, e.Line, e.ExitCode, e.Tail)
}

func (e *StepError) Unwrap() error { return e.Err }

// OutOfBandError is an operator step the harness does not provide: the
// install needs something besides the two repos and the age key.
type OutOfBandError struct{ ParseError }

// Check verifies, before anything runs, that the harness can do every
// operator step the document asks for.
func (r *Runner) Check(doc *Doc) error {
	known := make([]string, 0, len(r.Operators))
	for k := range r.Operators {
		known = append(known, k)
	}
	sort.Strings(known)
	for _, b := range doc.Blocks {
		if b.Runs == Operator && r.Operators[b.Step] == nil {
			return &OutOfBandError{ParseError{Path: doc.Path, Line: b.Line, Msg: fmt.Sprintf(
				"operator step %q asks for something done out of band that the harness does not do (it does: %s)",
				b.Step, strings.Join(known, ", "))}}
		}
		if b.Runs == Operator && b.Step == AgeKeyStep && r.AgeKeyPath != "" {
			if p := AgeKeyCommandProblems(b, r.AgeKeyPath); len(p) > 0 {
				return &OutOfBandError{ParseError{Path: doc.Path, Line: b.Line, Msg: strings.Join(p, "; ")}}
			}
		}
	}
	return nil
}

// Run runs every block in order and stops at the first failure. The record
// is returned in every case.
func (r *Runner) Run(ctx context.Context, doc *Doc) (*Record, error) {
	rec := &Record{Doc: doc.Path, Manifest: doc.Manifest}
	if err := r.Check(doc); err != nil {
		return rec, err
	}
	for i, b := range doc.Blocks {
		r.logf("install step %d/%d %q (%s, %s:%d)", i+1, len(doc.Blocks), b.Step, b.Runs, doc.Path, b.Line)
		res := StepResult{Step: b.Step, Runs: b.Runs, Line: b.Line, SHA256: b.SHA256}
		start := time.Now()
		var err error
		if b.Runs == Operator {
			var pushed []Pushed
			pushed, err = r.Operators[b.Step](ctx)
			rec.Pushed = append(rec.Pushed, pushed...)
			if err != nil {
				res.ExitCode = -1
			}
		} else {
			if r.BeforeStep != nil {
				err = r.BeforeStep(ctx, b)
			}
			var out *remote.Result
			if err == nil {
				out, err = r.Shell.Exec(ctx, b.Body, r.Timeout)
			}
			res.ExitCode = -1
			if out != nil {
				res.ExitCode = out.ExitCode
				res.OutputTail = remote.Tail(r.Redact, append(out.Stdout, out.Stderr...), 1024)
			}
		}
		res.Duration = time.Since(start)
		rec.Steps = append(rec.Steps, res)
		if r.AfterStep != nil {
			r.AfterStep(b)
		}
		if err != nil {
			se := &StepError{Doc: doc.Path, Step: b.Step, Line: b.Line, ExitCode: res.ExitCode, Tail: res.OutputTail, Err: err}
			var ce *remote.CommandError
			if errors.As(err, &ce) {
				se.Err = nil
			}
			return rec, se
		}
	}
	rec.Complete = true
	return rec, nil
}

// Ran reports whether the record holds exactly the document's blocks, in order.
func (rec *Record) Ran(doc *Doc) bool {
	if len(rec.Steps) != len(doc.Blocks) {
		return false
	}
	return slices.EqualFunc(rec.Steps, doc.Blocks, func(s StepResult, b Block) bool {
		return s.Step == b.Step && s.SHA256 == b.SHA256 && s.Runs == b.Runs
	})
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		r.Log(format, args...)
	}
}
