// Package redact keeps secrets out of everything the harness writes: every
// secret the harness learns is registered here, and all output passes
// through Redact before it reaches a log, a test message or evidence.
package redact

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/cc-ci/acceptance/helpers/secretforms"
)

// MinLen is the length under which a value is redacted only where it stands
// as a whole token (not inside a longer word: "ci" in "cc-ci" stays):
// every secret is redacted whatever its length, but a short one in the
// middle of ordinary text is not that secret.
const MinLen = 6

// Fingerprint is the printable stand-in for a secret: sha256, first 12 hex digits.
func Fingerprint(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// Redactor replaces registered secrets. The zero value is ready to use.
type Redactor struct {
	mu      sync.RWMutex
	secrets map[string]string // value (a secret, a line of one, or an encoding) → replacement
	ordered []string          // longest first, so a secret containing another is replaced whole
	tokens  map[string]*regexp.Regexp
}

// Add registers a secret under a name, in every form the leak scanner
// searches: as is, each line of a multi-line secret (a PEM key printed line
// by line), base64 (standard and URL, padded or not), hex (either case),
// URL-escaped, escaped inside a JSON, .drv or .nix string, UTF-16 — so an
// Authorization: Basic header, a hex dump, a JSON message or a derivation
// carrying it is caught too.
func (r *Redactor) Add(name string, secret []byte) {
	s := strings.TrimSpace(string(secret))
	if s == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.secrets == nil {
		r.secrets, r.tokens = map[string]string{}, map[string]*regexp.Regexp{}
	}
	add := func(form, kind string) {
		if form == "" {
			return
		}
		if _, ok := r.secrets[form]; ok {
			return
		}
		r.secrets[form] = "[REDACTED " + name + kind + " " + Fingerprint([]byte(s)) + "]"
		if len(form) < MinLen {
			r.tokens[form] = regexp.MustCompile(`(^|[^A-Za-z0-9_-])` + regexp.QuoteMeta(form) + `($|[^A-Za-z0-9_-])`)
		}
	}
	add(s, "")
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); len(line) >= MinLen && !strings.HasPrefix(line, "-----") {
			add(line, " line")
		}
	}
	b := []byte(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		add(enc.EncodeToString(b), " base64")
	}
	add(hex.EncodeToString(b), " hex")
	add(strings.ToUpper(hex.EncodeToString(b)), " hex")
	add(url.QueryEscape(s), " url-escaped")
	add(url.PathEscape(s), " url-escaped")
	for _, f := range append(secretforms.Escaped(s), secretforms.UTF16(s)...) {
		add(string(f.Bytes), " "+f.Variant)
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
		if !strings.Contains(s, secret) {
			continue
		}
		re, short := r.tokens[secret]
		if !short {
			s = strings.ReplaceAll(s, secret, r.secrets[secret])
			continue
		}
		// Adjacent tokens share a separator: replace until none is left.
		for i := 0; i < 3 && re.MatchString(s); i++ {
			s = re.ReplaceAllString(s, "${1}"+strings.ReplaceAll(r.secrets[secret], "$", "$$")+"${2}")
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
