package leakscan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/cc-ci/acceptance/helpers/secretforms"
)

// Needle is one searchable form of a secret.
type Needle struct {
	Secret  string `json:"secret"`  // the secret's name
	Variant string `json:"variant"` // raw, der, hex, HEX, base64@1, base64url@2, base64-wrapped, json-/drv-/nix-escaped, utf16le/be, percent
	Bytes   []byte `json:"bytes"`
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

// DefaultMinLen is the shortest needle searched for: shorter ones match by
// chance, and the scan's speed grows with it.
const DefaultMinLen = 12

// A secret inside line-wrapped base64 (64 or 76 columns) is broken by at
// most one newline per line width, so pieces of its base64 are searched for on
// their own: wrapFragment characters (72 bits: no chance match), every
// wrapStep, so any unbroken run of wrapFragment+wrapStep-1 characters holds one.
const (
	wrapFragment = 12
	wrapStep     = 4
)

// TooShort names the secrets shorter than minLen (DefaultMinLen when 0):
// the scanner does not search for them, so their absence from the repos
// and the store cannot be proven — a finding, not a log line.
func TooShort(secrets map[string]string, minLen int) []string {
	if minLen <= 0 {
		minLen = DefaultMinLen
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

// Needles expands secrets into every form they could be leaked in. Needles
// shorter than minLen are skipped, each with a warning.
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
	add := func(name, variant string, b []byte) {
		if len(b) < minLen {
			if warn != nil && variant == "raw" {
				warn("leakscan: %s is %d bytes, shorter than %d: not searched for", name, len(b), minLen)
			}
			return
		}
		if seen[string(b)] {
			return
		}
		seen[string(b)] = true
		out = append(out, Needle{Secret: name, Variant: variant, Bytes: b})
	}
	for _, name := range names {
		value := strings.TrimSpace(secrets[name])
		var forms [][]byte
		rest := []byte(value)
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			add(name, "der", blk.Bytes) // the key as bytes, e.g. inside a binary
			for _, line := range strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes})), "\n") {
				if line != "" && !strings.HasPrefix(line, "-----") {
					forms = append(forms, []byte(line))
				}
			}
		}
		isPEM := len(forms) > 0 // its lines and DER cover every other form
		if !isPEM {
			forms = [][]byte{[]byte(value)}
			if strings.Contains(value, "\n") {
				for _, l := range strings.Split(value, "\n") {
					forms = append(forms, []byte(strings.TrimSpace(l)))
				}
			}
		}
		for _, f := range forms {
			add(name, "raw", f)
			// Inside a quoted string (a .drv, JSON, a .nix file) and in a
			// UTF-16 file; a PEM's lines (base64) have no escaped form.
			for _, e := range append(secretforms.Escaped(string(f)), secretforms.UTF16(string(f))...) {
				add(name, e.Variant, e.Bytes)
			}
			add(name, "hex", []byte(hex.EncodeToString(f)))
			add(name, "HEX", []byte(strings.ToUpper(hex.EncodeToString(f))))
			if q := url.QueryEscape(string(f)); q != string(f) {
				add(name, "percent", []byte(q))
			}
			for shift := 0; shift < 3; shift++ {
				std := base64Inner(base64.StdEncoding, f, shift)
				add(name, fmt.Sprintf("base64@%d", shift), std)
				add(name, fmt.Sprintf("base64url@%d", shift), base64Inner(base64.URLEncoding, f, shift))
				for i := 0; i+wrapFragment <= len(std); i += wrapStep {
					add(name, "base64-wrapped", std[i:i+wrapFragment])
				}
			}
		}
	}
	return out
}

// base64Inner is the part of the base64 of f that is the same whatever
// surrounds f, when f starts shift bytes after a 3-byte boundary.
func base64Inner(enc *base64.Encoding, f []byte, shift int) []byte {
	s := enc.EncodeToString(append(bytes.Repeat([]byte{0}, shift), f...))
	start := (shift*4 + 2) / 3 // characters that also encode the bytes before f
	end := len(s) - 4          // the last group may mix in the bytes after f
	if end <= start {
		return nil
	}
	return []byte(s[start:end])
}
