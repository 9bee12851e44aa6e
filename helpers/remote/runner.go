package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/redact"
)

// Runner runs one command and waits for it: the machine over SSH (*Client)
// or the runner itself (Local), so a step that reads the target — the
// evaluation of its declarations — can run where it must.
type Runner interface {
	Run(ctx context.Context, command string, timeout time.Duration) (*Result, error)
	RunInput(ctx context.Context, command string, stdin []byte, timeout time.Duration) (*Result, error)
}

// Local runs commands on the runner as Client runs them on the machine:
// `bash -euo pipefail`, bounded by timeout, a non-zero exit a
// *CommandError with the redacted tail of stderr.
type Local struct {
	Redact *redact.Redactor
}

// Run is RunInput with no input.
func (l Local) Run(ctx context.Context, command string, timeout time.Duration) (*Result, error) {
	return l.RunInput(ctx, command, nil, timeout)
}

// RunInput runs command with stdin on its standard input.
func (l Local) RunInput(ctx context.Context, command string, stdin []byte, timeout time.Duration) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", command)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.WaitDelay = &out, &errb, bounds.Kill
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	res := &Result{Command: command, Stdout: out.Bytes(), Stderr: errb.Bytes(), Duration: time.Since(start), redact: l.Redact}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("local: %q: %w", firstLine(l.Redact.Redact(command)), ctx.Err())
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
		return res, &CommandError{Command: l.Redact.Redact(command), ExitCode: res.ExitCode, Stderr: Tail(l.Redact, res.Stderr, 2048)}
	case err != nil:
		return nil, fmt.Errorf("local: %q: %w", firstLine(l.Redact.Redact(command)), err)
	}
	return res, nil
}
