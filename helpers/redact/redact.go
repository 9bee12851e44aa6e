// Package redact keeps secrets out of everything the harness writes: every
// secret the harness learns is registered here, and all output passes
// through Redact before it reaches a log, a test message or evidence.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
)

// MinLen is the shortest value worth redacting: shorter ones would scrub
// ordinary text ("0", "true") and carry no secret worth the name.
const MinLen = 6

// Fingerprint is the printable stand-in for a secret: sha256, first 12 hex digits.
func Fingerprint(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// Redactor replaces registered secrets. The zero value is ready to use.
type Redactor struct {
	mu      sync.RWMutex
	secrets map[string]string // value → replacement
	ordered []string          // longest first, so a secret containing another is replaced whole
}

// Add registers a secret under a name. Each line of a multi-line secret is
// registered too, so a PEM key printed line by line is still caught.
func (r *Redactor) Add(name string, secret []byte) {
	s := strings.TrimSpace(string(secret))
	if len(s) < MinLen {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.secrets == nil {
		r.secrets = map[string]string{}
	}
	r.secrets[s] = "[REDACTED " + name + " " + Fingerprint([]byte(s)) + "]"
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= MinLen && !strings.HasPrefix(line, "-----") {
			if _, ok := r.secrets[line]; !ok {
				r.secrets[line] = "[REDACTED " + name + " line " + Fingerprint([]byte(line)) + "]"
			}
		}
	}
	r.ordered = r.ordered[:0]
	for k := range r.secrets {
		r.ordered = append(r.ordered, k)
	}
	sort.Slice(r.ordered, func(i, j int) bool { return len(r.ordered[i]) > len(r.ordered[j]) })
}

// Redact returns s with every registered secret replaced.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, secret := range r.ordered {
		if strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, r.secrets[secret])
		}
	}
	return s
}

// Len is the number of registered values (whole secrets and their lines).
func (r *Redactor) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.secrets)
}

// RedactError returns err with its text redacted (nil stays nil).
func (r *Redactor) RedactError(err error) error {
	if err == nil {
		return nil
	}
	return redactedError{msg: r.Redact(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }

// Unwrap keeps errors.Is working; the wrapped error's text is not shown.
func (e redactedError) Unwrap() error { return e.err }
