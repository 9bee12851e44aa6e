// Package secretforms spells a secret the ways a program writes it inside a
// quoted string or a wide-character file: the forms the leak scanner
// searches for and the redactor replaces, defined once for both.
package secretforms

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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
