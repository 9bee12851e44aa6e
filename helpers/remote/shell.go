package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Shell is one long-lived `bash -euo pipefail` on the machine. Commands run in
// it one after another and share its state (cwd, exported variables), like an
// operator following a document in one terminal. As with `set -e`, the first
// failing command ends the shell: later Exec calls return ErrShellEnded.
type Shell struct {
	c      *Client
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *lockedBuffer
	marker string
	ended  error
}

// ErrShellEnded is returned by Exec after the shell has exited.
var ErrShellEnded = errors.New("remote: the shell has ended")

// Shell starts a persistent shell.
func (c *Client) Shell(ctx context.Context) (*Shell, error) {
	sess, err := c.conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("remote: new session on %s: %w", c.cfg.Addr, err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errb := &lockedBuffer{}
	sess.Stderr = errb
	if err := sess.Start("bash --noprofile --norc -euo pipefail"); err != nil {
		return nil, fmt.Errorf("remote: start shell on %s: %w", c.cfg.Addr, err)
	}
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	s := &Shell{c: c, sess: sess, stdin: stdin, stdout: bufio.NewReaderSize(stdout, 64<<10),
		stderr: errb, marker: "__CCCI_DONE_" + hex.EncodeToString(nonce) + "__"}
	return s, nil
}

// Exec runs one command (a whole document block may span many lines) in the
// shell and waits at most timeout. The block's stdin is /dev/null so it cannot
// swallow the commands that follow it. A non-zero exit is a *CommandError;
// the shell has then ended, as `set -e` demands.
func (s *Shell) Exec(ctx context.Context, block string, timeout time.Duration) (*Result, error) {
	if s.ended != nil {
		return nil, s.ended
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s.stderr.Reset()
	start := time.Now()
	script := "{\n" + block + "\n} </dev/null\nprintf '\\n%s %d\\n' " + s.marker + " $?\n"
	if _, err := io.WriteString(s.stdin, script); err != nil {
		return nil, s.end(fmt.Errorf("remote: write to shell on %s: %w", s.c.cfg.Addr, err))
	}
	type read struct {
		out  []byte
		code int
		err  error
	}
	got := make(chan read, 1)
	go func() {
		out, code, err := readUntilMarker(s.stdout, s.marker)
		got <- read{out, code, err}
	}()
	var r read
	select {
	case r = <-got:
	case <-ctx.Done():
		_ = s.sess.Signal(ssh.SIGKILL)
		s.sess.Close()
		return nil, s.end(fmt.Errorf("remote: block on %s did not finish: %w", s.c.cfg.Addr, ctx.Err()))
	}
	res := &Result{Command: block, Stdout: r.out, Stderr: s.stderr.Bytes(), Duration: time.Since(start), redact: s.c.cfg.Redact}
	if r.err != nil {
		// No marker: the shell exited, which with set -e means the block failed.
		code, werr := s.exitCode()
		if werr != nil {
			return nil, s.end(fmt.Errorf("remote: shell on %s: %w", s.c.cfg.Addr, werr))
		}
		// Read stderr again: only after Wait is all of it copied (its last
		// lines — often the reason — may arrive after stdout's end).
		res.ExitCode, res.Stderr = code, s.stderr.Bytes()
		s.end(ErrShellEnded)
	} else {
		res.ExitCode = r.code
	}
	s.c.logf("ssh %s shell: block %s → exit %d in %s", s.c.cfg.Addr, firstLine(s.c.redact(block)), res.ExitCode, res.Duration.Round(time.Millisecond))
	if res.ExitCode != 0 {
		return res, &CommandError{Command: firstLine(s.c.redact(block)), ExitCode: res.ExitCode, Stderr: s.c.Tail(res.Stderr, 2048)}
	}
	return res, nil
}

// readUntilMarker collects a block's stdout (bounded) up to the marker line
// the shell prints after it, "MARKER CODE", and parses the exit code. No
// marker (the shell ended) is the output so far and the read error. It reads
// in slices of the reader's buffer, so a line without end (a machine that
// prints 256 MiB and no newline) costs the bounded output, not its length.
func readUntilMarker(r *bufio.Reader, marker string) ([]byte, int, error) {
	var out lockedBuffer
	prefix := []byte(marker + " ")
	atLineStart := true
	for {
		chunk, err := r.ReadSlice('\n')
		if atLineStart && (err == nil || errors.Is(err, io.EOF)) && bytes.HasPrefix(chunk, prefix) {
			rest := string(bytes.TrimSpace(chunk[len(prefix):]))
			code, perr := strconv.Atoi(rest)
			if perr != nil || code < 0 || code > 255 {
				return nil, 0, fmt.Errorf("remote: bad exit status after the marker: %.40q", rest)
			}
			// Drop the newline we printed in front of the marker.
			return bytes.TrimSuffix(out.Bytes(), []byte("\n")), code, nil
		}
		_, _ = out.Write(chunk)
		atLineStart = err == nil // a whole line was read; ErrBufferFull: the line goes on
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return out.Bytes(), 0, err
		}
	}
}

func (s *Shell) exitCode() (int, error) {
	err := s.sess.Wait()
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		return exit.ExitStatus(), nil
	}
	return 0, err
}

func (s *Shell) end(err error) error {
	if s.ended == nil {
		s.ended = err
	}
	return err
}

// Close ends the shell.
func (s *Shell) Close() error {
	s.stdin.Close()
	s.end(ErrShellEnded)
	return s.sess.Close()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strconv.Quote(s[:i] + " …")
	}
	return strconv.Quote(s)
}

// MaxOutput bounds what the harness keeps of one command's stdout or
// stderr: the machine is not trusted to print a reasonable amount.
const MaxOutput = 16 << 20

// lockedBuffer is a bytes.Buffer written by the SSH library's goroutine. It
// keeps at most MaxOutput bytes and drops the rest, counting them.
type lockedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	dropped int64
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if room := MaxOutput - l.b.Len(); room < n {
		l.dropped += int64(n - room)
		p = p[:room]
	}
	l.b.Write(p)
	return n, nil // what is dropped is consumed, so the command is never blocked
}

// Bytes returns what was kept, marked when output was dropped.
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]byte(nil), l.b.Bytes()...)
	if l.dropped > 0 {
		out = fmt.Appendf(out, "\n…[%d more bytes dropped: output is kept up to %d bytes]", l.dropped, MaxOutput)
	}
	return out
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
	l.dropped = 0
}
