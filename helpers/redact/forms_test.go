package redact_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/redact"
)

// What the leak scanner would find, the redactor has removed: the audit's
// forms — base64 at a shifted alignment inside a longer string, wrapped
// base64, grouped hex, lower-case %xx, Python-quoted and \u0026-escaped
// text — and the rest, each checked by scanning the redacted text.
func TestNothingTheScannerFindsSurvivesRedaction(t *testing.T) {
	const secret = `w1nter&2026'<pass>\path/ok`
	r := &redact.Redactor{}
	r.Add("registry_password", []byte(secret))
	scanner := leakscan.New(leakscan.Needles(map[string]string{"registry_password": secret}, 0, nil))
	b := []byte(secret)
	htmlJSON, err := json.Marshal(secret)
	require.NoError(t, err)
	wrapped := func(s string) string { // as base64 -w 76 writes it
		var lines []string
		for len(s) > 76 {
			lines, s = append(lines, s[:76]), s[76:]
		}
		return strings.Join(append(lines, s), "\n")
	}
	long := strings.Repeat("header-bytes.", 5)
	for name, text := range map[string]string{
		"base64 at offset 1":        base64.StdEncoding.EncodeToString(append([]byte("x"), b...)),
		"base64 at offset 2":        "Authorization: Basic " + base64.StdEncoding.EncodeToString(append([]byte("u:"), b...)),
		"base64url inside a longer": base64.RawURLEncoding.EncodeToString([]byte(long + secret + long)),
		"wrapped base64":            wrapped(base64.StdEncoding.EncodeToString([]byte(long + long + secret + long))),
		"grouped hex":               "dump: " + strings.Join(pairs(hex.EncodeToString(b)), " "),
		"grouped HEX with colons":   strings.ToUpper(strings.Join(pairs(hex.EncodeToString(b)), ":")),
		"lower-case %xx":            "https://x/?p=" + strings.ToLower(url.QueryEscape(secret)),
		"Python-quoted":             "config = {'password': '" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret) + "'}",
		"\\u0026-escaped JSON":      `{"password":` + string(htmlJSON) + `}`,
		"raw":                       "pass=" + secret,
	} {
		t.Run(name, func(t *testing.T) {
			found, err := scanner.Reader("before", strings.NewReader(text))
			require.NoError(t, err)
			require.NotEmpty(t, found, "the scanner finds it (else the row proves nothing): %s", text)
			out := r.Redact(text)
			found, err = scanner.Reader("after", strings.NewReader(out))
			require.NoError(t, err)
			assert.Empty(t, found, "redacted: %s", out)
			assert.Contains(t, out, "[REDACTED registry_password")
		})
	}
}

// The stand-in is keyed: no plain hash of the secret is printed, so a weak
// secret cannot be found by hashing guesses; two runs' stand-ins differ.
func TestTheStandInIsKeyed(t *testing.T) {
	const weak = "winter2026"
	a, b := &redact.Redactor{}, &redact.Redactor{}
	a.Add("pw", []byte(weak))
	b.Add("pw", []byte(weak))
	outA, outB := a.Redact("pw="+weak), b.Redact("pw="+weak)
	sum := sha256.Sum256([]byte(weak))
	assert.NotContains(t, outA, hex.EncodeToString(sum[:6]), "no plain hash of the secret")
	assert.NotEqual(t, outA, outB, "another key, another stand-in")
	assert.Equal(t, outA, a.Redact("pw="+weak), "one Redactor, one stand-in")
	assert.Contains(t, outA, a.Fingerprint([]byte(weak)))
}

func pairs(h string) []string {
	var out []string
	for i := 0; i < len(h); i += 2 {
		out = append(out, h[i:i+2])
	}
	return out
}
