package secretforms

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
)

// A secret inside line-wrapped base64 (64 or 76 columns) is broken by at
// most one newline per line width, so pieces of its base64 are forms of
// their own: WrapFragment characters (84 bits: no chance match), every
// wrapStep, so any unbroken run of WrapFragment+wrapStep-1 (15) characters
// holds one. The shortest needle sets the scan's stride (leakscan.Matcher):
// 14 and 2 hold the same 15 as 12 and 4 did, with a stride longer by two.
const (
	WrapFragment = 14
	wrapStep     = 2
)

// All is every spelling of a secret the leak scanner searches for and the
// redactor replaces, one list for both: the secret (each line of a
// multi-line one; a PEM block's lines and its DER bytes), and for each of
// those its escaped forms (JSON with and without HTML escapes, .drv, Nix,
// Python), UTF-16, hex (either case, plain or grouped by byte), percent-
// encoding (either case) and base64 (standard and URL, at each of the three
// alignments it can start at inside a longer text, and in pieces for
// line-wrapped base64). A form marked Fragment is part of an encoding of a
// longer text: the redactor takes the whole encoded run around it.
func All(secret string) []Form {
	value := strings.TrimSpace(secret)
	var out []Form
	seen := map[string]bool{}
	add := func(variant string, b []byte, fragment bool) {
		if len(b) == 0 || seen[string(b)] {
			return
		}
		seen[string(b)] = true
		out = append(out, Form{Variant: variant, Bytes: b, Fragment: fragment})
	}
	var lines [][]byte
	rest := []byte(value)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		add("der", blk.Bytes, false) // the key as bytes, e.g. inside a binary
		for _, line := range strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes})), "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") {
				lines = append(lines, []byte(line))
			}
		}
	}
	if len(lines) == 0 { // not PEM: its lines and DER cover every other form
		lines = [][]byte{[]byte(value)}
		if strings.Contains(value, "\n") {
			for _, l := range strings.Split(value, "\n") {
				if l = strings.TrimSpace(l); !strings.HasPrefix(l, "-----") { // armour is no secret
					lines = append(lines, []byte(l))
				}
			}
		}
	}
	for _, f := range lines {
		add("raw", f, false)
		for _, e := range append(Escaped(string(f)), UTF16(string(f))...) {
			add(e.Variant, e.Bytes, false)
		}
		h := hex.EncodeToString(f)
		add("hex", []byte(h), false)
		add("HEX", []byte(strings.ToUpper(h)), false)
		for _, sep := range []string{":", " "} {
			g := grouped(h, sep)
			add("hex-grouped", []byte(g), false)
			add("HEX-grouped", []byte(strings.ToUpper(g)), false)
		}
		for _, q := range []string{url.QueryEscape(string(f)), url.PathEscape(string(f))} {
			if q != string(f) {
				add("percent", []byte(q), false)
				add("percent-lower", []byte(lowerEscapes(q)), false)
			}
		}
		for shift := 0; shift < 3; shift++ {
			std := base64Inner(base64.StdEncoding, f, shift)
			add(fmt.Sprintf("base64@%d", shift), std, true)
			add(fmt.Sprintf("base64url@%d", shift), base64Inner(base64.URLEncoding, f, shift), true)
			for i := 0; i+WrapFragment <= len(std); i += wrapStep {
				add("base64-wrapped", std[i:i+WrapFragment], true)
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

// grouped is hex with sep between bytes (de:ad:be:ef, a hexdump's de ad be ef).
func grouped(h, sep string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// lowerEscapes writes a percent-encoding's %XX in lower case (%2f): both
// are the same bytes to a URL parser.
func lowerEscapes(q string) string {
	b := []byte(q)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = bytes.ToLower(b[i+1 : i+2])[0], bytes.ToLower(b[i+2 : i+3])[0]
		}
	}
	return string(b)
}

// WordByte says b continues a word: a secret too short to be searched for
// inside other text (a user name) is found, and redacted, only where no
// word byte touches it — "ci" in "cc-ci" is not the secret "ci".
func WordByte(b byte) bool {
	return b == '_' || b == '-' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}

// WordClass is WordByte's set as a regexp character class body.
const WordClass = `A-Za-z0-9_-`
