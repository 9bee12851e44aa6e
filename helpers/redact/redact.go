// Package redact keeps secrets out of everything the harness writes: every
// secret the harness learns is registered here, and all output passes
// through Redact before it reaches a log, a test message or evidence.
package redact

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

// Redactor replaces registered secrets. The zero value is ready to use.
//
// The stand-in names the secret and a fingerprint keyed with a random key
// of this Redactor's own (HMAC-SHA256), never written out: the stand-ins
// of one run can be compared with each other, but a weak secret cannot be
// found by hashing guesses until one matches the evidence (a plain hash of
// "winter2026" was, in 367 guesses).
type Redactor struct {
	mu        sync.RWMutex
	key       []byte
	secrets   map[string]string // value (a secret, a line of one, or an encoding) → replacement
	ordered   []string          // longest first, so a secret containing another is replaced whole
	tokens    map[string]*regexp.Regexp
	fragments map[string]bool // parts of an encoded run: the whole run is replaced
}

// Fingerprint is the stand-in's fingerprint of a secret: HMAC-SHA256 under
// the Redactor's key, first 12 hex digits.
func (r *Redactor) Fingerprint(secret []byte) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fingerprint(secret)
}

func (r *Redactor) fingerprint(secret []byte) string {
	if r.key == nil {
		r.key = make([]byte, 32)
		if _, err := rand.Read(r.key); err != nil {
			panic("redact: no randomness for the fingerprint key: " + err.Error())
		}
	}
	m := hmac.New(sha256.New, r.key)
	m.Write(secret)
	return "hmac:" + hex.EncodeToString(m.Sum(nil)[:6])
}

// Add registers a secret under a name, in every form the leak scanner
// searches (secretforms.All): as is, each line of a multi-line secret,
// escaped inside a JSON, .drv, .nix or Python string, UTF-16, hex,
// percent-encoded, base64 at any alignment or line-wrapped — so an
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
		r.secrets, r.tokens, r.fragments = map[string]string{}, map[string]*regexp.Regexp{}, map[string]bool{}
	}
	fp := r.fingerprint([]byte(s))
	for _, f := range secretforms.All(s) {
		form := string(f.Bytes)
		if _, ok := r.secrets[form]; ok || f.Variant == "der" { // binary: never printed as such
			continue
		}
		if len(form) < MinLen && form != s { // a short line of a longer secret ("}") is no secret
			continue
		}
		kind := ""
		if f.Variant != "raw" {
			kind = f.Variant + " "
		}
		r.secrets[form] = "[REDACTED " + name + " " + kind + fp + "]"
		r.fragments[form] = f.Fragment
		if len(form) < MinLen {
			r.tokens[form] = regexp.MustCompile(`(^|[^` + secretforms.WordClass + `])` + regexp.QuoteMeta(form) + `($|[^` + secretforms.WordClass + `])`)
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
		if !strings.Contains(s, secret) {
			continue
		}
		if r.fragments[secret] {
			s = replaceRuns(s, secret, r.secrets[secret])
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

// replaceRuns replaces each run of base64 text that holds the fragment —
// the fragment widened over the base64 alphabet on both sides, across the
// line breaks of wrapped base64 — by the stand-in: what surrounds a
// fragment in its run encodes the rest of the secret.
func replaceRuns(s, fragment, stand string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, fragment)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		start, end := i, i+len(fragment)
		for start > 0 && (isBase64(s[start-1]) || s[start-1] == '\n' && start > 1 && isBase64(s[start-2])) {
			start--
		}
		for end < len(s) && (isBase64(s[end]) || s[end] == '\n' && end+1 < len(s) && isBase64(s[end+1])) {
			end++
		}
		b.WriteString(s[:start])
		b.WriteString(stand)
		s = s[end:]
	}
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_' || c == '='
}
