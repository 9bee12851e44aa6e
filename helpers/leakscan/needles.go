package leakscan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cc-ci/acceptance/helpers/secretforms"
)

// Needle is one searchable form of a secret.
type Needle struct {
	Secret  string `json:"secret"`  // the secret's name
	Variant string `json:"variant"` // secretforms.All's: raw, der, hex, base64@1, base64-wrapped, json-escaped, utf16le, percent, …
	Bytes   []byte `json:"bytes"`
	// Token: found only where it stands as a whole token (a form shorter
	// than the scan's MinLen: inside other text it matches by chance).
	Token bool `json:"token,omitempty"`
}

// Finding is where a needle was found: never the bytes, never the context.
type Finding struct {
	Secret  string `json:"secret"`
	Variant string `json:"variant"`
	Where   string `json:"where"` // a file, or "git object <id> (<path>)"
	Offset  int64  `json:"offset"`
	Length  int64  `json:"length"` // of the matched bytes
	// Problem: what the scan could not do here (Variant Unsearched or
	// Undecodable; Secret is empty).
	Problem string `json:"problem,omitempty"`
}

func (f Finding) String() string {
	if f.Problem != "" {
		return fmt.Sprintf("%s: %s (%s)", f.Where, f.Problem, f.Variant)
	}
	return fmt.Sprintf("%s (%s) in %s at offset %d", f.Secret, f.Variant, f.Where, f.Offset)
}

// DefaultMinLen is the shortest needle searched for anywhere: shorter ones
// match by chance inside other text, and the scan's speed grows with it.
// A form from MinTokenLen up to it is searched as a whole token (Needle.Token).
const DefaultMinLen = 12

// MinTokenLen is the shortest form searched for at all, as a token: the
// matcher's probe is 4 bytes, and a 3-byte word proves nothing.
const MinTokenLen = 4

// TooShort names the secrets shorter than minLen (MinTokenLen when 0): the
// scanner does not search for them, so their absence from the repos and
// the store cannot be proven — a finding, not a log line.
func TooShort(secrets map[string]string, minLen int) []string {
	if minLen <= 0 {
		minLen = MinTokenLen
	}
	var out []string
	for name, v := range secrets {
		if n := len(strings.TrimSpace(v)); n < minLen {
			out = append(out, fmt.Sprintf("%s is %d bytes", name, n))
		}
	}
	sort.Strings(out)
	return out
}

// Needles expands secrets into every form they could be leaked in. A form
// shorter than minLen is a token needle, as the redactor treats it; one
// shorter than MinTokenLen, or a piece of a longer encoding, is skipped (a
// secret's raw form with a warning).
func Needles(secrets map[string]string, minLen int, warn func(format string, args ...any)) []Needle {
	if minLen <= 0 {
		minLen = DefaultMinLen
	}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	var out []Needle
	add := func(name string, f secretforms.Form) {
		token := len(f.Bytes) < minLen
		if token && (len(f.Bytes) < MinTokenLen || f.Fragment) {
			if warn != nil && f.Variant == "raw" {
				warn("leakscan: %s is %d bytes, shorter than %d: not searched for", name, len(f.Bytes), MinTokenLen)
			}
			return
		}
		if seen[string(f.Bytes)] {
			return
		}
		seen[string(f.Bytes)] = true
		out = append(out, Needle{Secret: name, Variant: f.Variant, Bytes: f.Bytes, Token: token})
	}
	for _, name := range names {
		for _, f := range secretforms.All(secrets[name]) {
			add(name, f)
		}
	}
	return out
}
