// Package gitexec is the one way the harness runs git: on repos it does not
// trust (a target's clones, repos it scans) and on the fixtures it builds.
// git never reads the caller's system or global config or a terminal; its
// output is bounded; stderr is kept (its first 4 KiB) for the message.
package gitexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// MaxOutput bounds what one git command may print on stdout.
const MaxOutput = 64 << 20

// ErrTooLarge is a command whose output went past MaxOutput.
var ErrTooLarge = errors.New("git output larger than its bound")

// Env is the environment git runs with: no system or global config, no
// prompts, plus extra.
func Env(extra ...string) []string {
	return append(append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"), extra...)
}

// Run runs git with args (extra environment in env, stdin if not nil) and
// returns its stdout, at most MaxOutput bytes, and the start of its stderr.
func Run(ctx context.Context, env []string, stdin io.Reader, args ...string) (stdout []byte, stderr string, err error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env, cmd.Stdin = Env(env...), stdin
	out, errb := &bounded{max: MaxOutput}, &bounded{max: 4096}
	cmd.Stdout, cmd.Stderr = out, errb
	err = cmd.Run()
	if err != nil && errors.Is(out.err, ErrTooLarge) {
		err = out.err
	}
	return out.buf.Bytes(), strings.TrimSpace(errb.buf.String()), err
}

// In runs git in the repo at dir and returns its stdout; the error names the
// command, the repo (as where names it) and what git said.
func In(ctx context.Context, dir, where string, args ...string) ([]byte, error) {
	out, stderr, err := Run(ctx, nil, nil, append([]string{"-C", dir}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), where, err, stderr)
	}
	return out, nil
}

// Stream starts git in dir for a caller that reads its stdout as it comes
// (cat-file --batch); the caller must drain it and Wait.
func Stream(ctx context.Context, dir string, env []string, args ...string) (*exec.Cmd, io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = Env(env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("git %s in %s: %w", strings.Join(args, " "), dir, err)
	}
	return cmd, stdout, nil
}

// bounded keeps at most max bytes and then fails the write.
type bounded struct {
	max int
	buf bytes.Buffer
	err error
}

func (b *bounded) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		b.err = ErrTooLarge
		return 0, b.err
	}
	return b.buf.Write(p)
}

// ObjectPaths maps the objects reachable from every ref of repo to a path
// each appears at (a blob's file, a tree's directory), for naming what a
// scan of the object database found.
func ObjectPaths(ctx context.Context, repo string) (map[string]string, error) {
	out, err := In(ctx, repo, repo, "rev-list", "--all", "--objects")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if id, p, ok := strings.Cut(line, " "); ok && p != "" {
			m[id] = p
		}
	}
	return m, nil
}
