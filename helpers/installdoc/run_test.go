package installdoc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// recorded is an Executor that answers each block from a table of recorded
// results, by the block's first word, and remembers what it ran.
type recorded struct {
	answers map[string]func() (*remote.Result, error)
	ran     []string
}

func (e *recorded) Exec(_ context.Context, block string, _ time.Duration) (*remote.Result, error) {
	e.ran = append(e.ran, block)
	for prefix, answer := range e.answers {
		if strings.HasPrefix(block, prefix) {
			return answer()
		}
	}
	return &remote.Result{Command: block}, nil
}

func exited(code int, stderr string) func() (*remote.Result, error) {
	return func() (*remote.Result, error) {
		return &remote.Result{ExitCode: code, Stderr: []byte(stderr)}, &remote.CommandError{ExitCode: code, Stderr: stderr}
	}
}

// The install runner's classification of what happened, on recorded outcomes.
func TestTheRunnerClassifiesEachOutcome(t *testing.T) {
	const secret = "s3cr3t-rpc-value-0123456789"
	pushKey := func(context.Context) ([]Pushed, error) {
		return []Pushed{{Step: "provision-age-key", Path: keyPath, Mode: "0400", Fingerprint: "ab12"}}, nil
	}
	for _, c := range []struct {
		name      string
		doc       []byte
		answers   map[string]func() (*remote.Result, error)
		operators map[string]OperatorAction
		wantErr   string
		steps     int // records kept
		complete  bool
		allRan    bool // every block of the document ran (the last may have failed)
		ran       int  // machine blocks executed
	}{
		{name: "every block exits 0", doc: doc(cloneBase, ageKey, cloneSecrets, switchStep), complete: true, allRan: true, steps: 4, ran: 3},
		{name: "a block exits non-zero: the step, its line, the status and the redacted tail",
			doc:     doc(cloneBase, ageKey, cloneSecrets, switchStep),
			answers: map[string]func() (*remote.Result, error){"nixos-rebuild": exited(1, "error: secret "+secret+" rejected")},
			wantErr: `install step "switch" (install.md:15) exited 1: error: secret [REDACTED drone_rpc_secret`, allRan: true, steps: 4, ran: 3},
		{name: "the shell itself broke: the step and the cause, no exit status",
			doc: doc(cloneBase, ageKey, cloneSecrets, switchStep),
			answers: map[string]func() (*remote.Result, error){"git clone http://git/s.git": func() (*remote.Result, error) {
				return nil, errors.New("remote: block did not finish: context deadline exceeded")
			}},
			wantErr: `install step "clone-secrets" (install.md:11): remote: block did not finish`, steps: 3, ran: 2},
		{name: "an operator step the harness does not do: refused before anything runs",
			doc:     doc(cloneBase, ageKey, "```sh {step=provision-token runs=operator}\nscp t root@${MACHINE}:/t\n```", switchStep),
			wantErr: `operator step "provision-token" asks for something done out of band`, steps: 0, ran: 0},
		{name: "the operator action fails",
			doc: doc(cloneBase, ageKey, switchStep),
			operators: map[string]OperatorAction{"provision-age-key": func(context.Context) ([]Pushed, error) {
				return nil, errors.New("push refused: not the run's machine")
			}},
			wantErr: `install step "provision-age-key" (install.md:7): push refused`, steps: 2, ran: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse("install.md", c.doc, values)
			require.NoError(t, err)
			ex := &recorded{answers: c.answers}
			ops := c.operators
			if ops == nil {
				ops = map[string]OperatorAction{"provision-age-key": pushKey}
			}
			r := &redact.Redactor{}
			r.Add("drone_rpc_secret", []byte(secret))
			var after []string
			runner := &Runner{Shell: ex, Operators: ops, Timeout: time.Second, Redact: r, AfterStep: func(b Block) { after = append(after, b.Step) }}
			rec, err := runner.Run(context.Background(), d)
			require.NotNil(t, rec, "a record in every case")
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				assert.NotContains(t, err.Error(), secret)
				var oob *OutOfBandError
				assert.Equal(t, c.steps == 0, errors.As(err, &oob), "only a refused operator step is an OutOfBandError")
			} else {
				require.NoError(t, err)
			}
			assert.Len(t, rec.Steps, c.steps)
			assert.Len(t, ex.ran, c.ran)
			assert.Equal(t, c.complete, rec.Complete)
			assert.Equal(t, c.allRan, rec.Ran(d), "Ran: exactly the document's blocks, in order")
			assert.Len(t, after, c.steps, "AfterStep once per block that ran")
		})
	}
}
