// Package secretforms spells a secret the ways a program writes it inside a
// quoted string or a wide-character file: the forms the leak scanner
// searches for and the redactor replaces, defined once for both.
package secretforms

import (
	"encoding/binary"
	"strings"
	"unicode/utf16"
)

// Form is one spelling of a secret.
type Form struct {
	Variant string // what a finding or a redaction calls it
	Bytes   []byte
}

// Escaped are the secret as it appears inside a quoted string, where it
// differs from the secret itself:
//   - json-escaped: a JSON string (encoding/json's escapes, without its
//     HTML ones: what `nix derivation show`, structured attrs and most
//     programs print);
//   - drv-escaped: a string in a .drv file, which Nix writes in ATerm form
//     escaping only `"`, `\`, newline, carriage return and tab
//     (src/libstore/derivations.cc, printString);
//   - nix-escaped: a Nix string literal ("…"), which also escapes `${`.
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
		out = append(out, Form{variant, []byte(v)})
	}
	add("json-escaped", jsonEscape(s))
	add("drv-escaped", atermEscape(s))
	add("nix-escaped", strings.ReplaceAll(atermEscape(s), "${", `\${`))
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
	return []Form{{"utf16le", le}, {"utf16be", be}}
}

func atermEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(s)
}

// jsonEscape is encoding/json's string escaping with SetEscapeHTML(false):
// `"` `\` and control characters; U+2028 and U+2029 as \u escapes.
func jsonEscape(s string) string {
	const hexDigits = "0123456789abcdef"
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hexDigits[(r>>shift)&0xf])
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
