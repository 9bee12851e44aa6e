// Package secretforms spells a secret the ways a program writes it inside a
// quoted string or a wide-character file: the forms the leak scanner
// searches for and the redactor replaces, defined once for both.
package secretforms

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf16"
)

// Form is one spelling of a secret.
type Form struct {
	Variant  string // what a finding or a redaction calls it
	Bytes    []byte
	Fragment bool // part of an encoding of a longer text (base64 at an offset, or wrapped)
}

// Escaped are the secret as it appears inside a quoted string, where it
// differs from the secret itself:
//   - json-escaped: a JSON string (encoding/json's escapes, without its
//     HTML ones: what `nix derivation show`, structured attrs and most
//     programs print);
//   - drv-escaped: a string in a .drv file, which Nix writes in ATerm form
//     escaping only `"`, `\`, newline, carriage return and tab
//     (src/libstore/derivations.cc, printString);
//   - nix-escaped: a Nix string literal ("…"), which also escapes `${`;
//   - json-html-escaped: a JSON string with encoding/json's default HTML
//     escapes (& < > as \u0026 \u003c \u003e: Go's json.Marshal);
//   - python-escaped: inside a Python str's repr ('…': \\, \', \n, \r,
//     \t, other control bytes as \xNN).
func Escaped(s string) []Form {
	var out []Form
	add := func(variant, v string) {
		if v == s {
			return
		}
		for _, f := range out {
			if string(f.Bytes) == v {
				return
			}
		}
		out = append(out, Form{Variant: variant, Bytes: []byte(v)})
	}
	add("json-escaped", jsonEscape(s))
	add("json-html-escaped", jsonHTMLEscape(s))
	add("drv-escaped", atermEscape(s))
	add("nix-escaped", strings.ReplaceAll(atermEscape(s), "${", `\${`))
	add("python-escaped", pythonEscape(s))
	return out
}

// UTF16 are the secret as a UTF-16 file holds it, little- and big-endian
// (Windows tooling, some Java and .NET stores).
func UTF16(s string) []Form {
	units := utf16.Encode([]rune(s))
	le, be := make([]byte, 2*len(units)), make([]byte, 2*len(units))
	for i, u := range units {
		binary.LittleEndian.PutUint16(le[2*i:], u)
		binary.BigEndian.PutUint16(be[2*i:], u)
	}
	return []Form{{Variant: "utf16le", Bytes: le}, {Variant: "utf16be", Bytes: be}}
}

func atermEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(s)
}

// jsonEscape is the secret as encoding/json writes it inside a string,
// without its HTML escapes.
func jsonEscape(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	return string(out[1 : len(out)-1])
}

// jsonHTMLEscape is the secret as encoding/json's default (HTML-safe)
// encoder writes it inside a string.
func jsonHTMLEscape(s string) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(s) // a string always encodes
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	return string(out[1 : len(out)-1])
}

// pythonEscape is the secret inside a Python str's repr, single-quoted.
func pythonEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\' || r == '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
