// Package remote runs commands on a machine over SSH with a pinned host key:
// one-off commands (Run) and a persistent `bash -euo pipefail` shell (Shell)
// whose commands share state the way an operator's terminal does.
// Everything logged passes through a redactor first.
package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/redact"
)

// Config says how to reach one machine.
type Config struct {
	Addr    string        // host:port
	User    string        // default root
	Signer  ssh.Signer    // the harness's key for this run
	HostKey ssh.PublicKey // pinned; read out of band (Incus exec), never trusted on first use
	Timeout time.Duration // dial timeout, default 10s
	Redact  *redact.Redactor
	Log     func(format string, args ...any) // nil: no logging
}

// Client is one SSH connection.
type Client struct {
	cfg  Config
	conn *ssh.Client
}

// Dial connects and authenticates. A host key other than the pinned one is refused.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.HostKey == nil {
		return nil, errors.New("remote: no pinned host key: refusing to connect")
	}
	if cfg.User == "" {
		cfg.User = "root"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = bounds.Dial
	}
	sshCfg := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback:   ssh.FixedHostKey(cfg.HostKey),
		HostKeyAlgorithms: []string{cfg.HostKey.Type()},
		Timeout:           cfg.Timeout,
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("remote: dial %s: %w", cfg.Addr, err)
	}
	// ssh.NewClientConn has no deadline of its own: an sshd that accepts TCP
	// and then says nothing would hold us (and teardown) forever.
	deadline := time.Now().Add(cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c, chans, reqs, err := ssh.NewClientConn(nc, cfg.Addr, sshCfg)
	stop()
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return nil, fmt.Errorf("remote: ssh handshake with %s@%s (deadline %s): %w", cfg.User, cfg.Addr, cfg.Timeout, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return &Client{cfg: cfg, conn: ssh.NewClient(c, chans, reqs)}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Result is one finished command.
type Result struct {
	Command  string
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	Duration time.Duration
	redact   *redact.Redactor // the client's: for StdoutTail
}

// StdoutTail is at most n trailing bytes of what the command printed,
// redacted first: the way the machine's output goes into a message.
func (r *Result) StdoutTail(n int) string { return Tail(r.redact, r.Stdout, n) }

// CommandError is a command that ran and exited non-zero: the target's fault,
// as opposed to an error reaching the machine (the harness's or the lab's).
type CommandError struct {
	Command  string
	ExitCode int
	Stderr   string // redacted tail
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("command %q exited %d: %s", e.Command, e.ExitCode, e.Stderr)
}

// Run executes one command under `bash -euo pipefail` in a fresh session and
// waits at most timeout. A non-zero exit is a *CommandError (Result is still returned).
func (c *Client) Run(ctx context.Context, command string, timeout time.Duration) (*Result, error) {
	return c.RunInput(ctx, command, nil, timeout)
}

// RunInput is Run with data on the command's stdin — the way to hand the
// machine something (needles to search for) without writing it to disk.
func (c *Client) RunInput(ctx context.Context, command string, stdin []byte, timeout time.Duration) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sess, err := c.conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("remote: new session on %s: %w", c.cfg.Addr, err)
	}
	defer sess.Close()
	var out, errb lockedBuffer
	sess.Stdout, sess.Stderr = &out, &errb
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- sess.Run("bash --noprofile --norc -euo pipefail -c " + ShellQuote(command)) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		return nil, fmt.Errorf("remote: %q on %s: %w", c.redact(command), c.cfg.Addr, ctx.Err())
	}
	res := &Result{Command: command, Stdout: out.Bytes(), Stderr: errb.Bytes(), Duration: time.Since(start), redact: c.cfg.Redact}
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitStatus()
	case err != nil:
		return nil, fmt.Errorf("remote: %q on %s: %w", c.redact(command), c.cfg.Addr, err)
	}
	c.logf("ssh %s: %s → exit %d in %s", c.cfg.Addr, firstLine(c.redact(command)), res.ExitCode, res.Duration.Round(time.Millisecond))
	if res.ExitCode != 0 {
		return res, &CommandError{Command: c.redact(command), ExitCode: res.ExitCode, Stderr: c.Tail(res.Stderr, 2048)}
	}
	return res, nil
}

func (c *Client) redact(s string) string { return c.cfg.Redact.Redact(s) }

func (c *Client) logf(format string, args ...any) {
	if c.cfg.Log != nil {
		c.cfg.Log(format, args...)
	}
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Tail redacts b, then returns at most n trailing bytes of it as text,
// marked when cut. Redaction comes first: a secret cut at the edge would
// otherwise no longer match, and its tail would leak.
func Tail(r *redact.Redactor, b []byte, n int) string {
	s := r.Redact(string(b))
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Tail is the package Tail with the client's redactor: for output of the
// machine that goes into a message.
func (c *Client) Tail(b []byte, n int) string { return Tail(c.cfg.Redact, b, n) }

// NewKey makes a fresh ed25519 SSH key: a run's client key, a fake server's
// host key, a test's signing key.
func NewKey() (ssh.Signer, ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	s, err := ssh.NewSignerFromKey(priv)
	return s, priv, err
}

// Stream runs command with fn reading its stdout as it comes: for output
// too large to hold (a tar of store paths). fn's error ends the command.
func (c *Client) Stream(ctx context.Context, command string, stdin []byte, timeout time.Duration, fn func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sess, err := c.conn.NewSession()
	if err != nil {
		return fmt.Errorf("remote: new session on %s: %w", c.cfg.Addr, err)
	}
	defer sess.Close()
	var errb lockedBuffer
	sess.Stderr = &errb
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		return fmt.Errorf("remote: %q on %s: %w", c.redact(command), c.cfg.Addr, err)
	}
	if err := sess.Start("bash --noprofile --norc -euo pipefail -c " + ShellQuote(command)); err != nil {
		return fmt.Errorf("remote: %q on %s: %w", c.redact(command), c.cfg.Addr, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = sess.Signal(ssh.SIGKILL); sess.Close() })
	defer stop()
	if err := fn(out); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, out)
	err = sess.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("remote: %q on %s: %w", c.redact(command), c.cfg.Addr, ctx.Err())
	}
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		return &CommandError{Command: c.redact(command), ExitCode: exit.ExitStatus(), Stderr: c.Tail(errb.Bytes(), 2048)}
	}
	return err
}
