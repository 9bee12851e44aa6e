package redact

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactReplacesSecretWithFingerprint(t *testing.T) {
	var r Redactor
	r.Add("webhook-hmac", []byte("s3cr3t-hmac-value\n"))
	out := r.Redact("curl -H 'X-Sig: s3cr3t-hmac-value' done")
	assert.NotContains(t, out, "s3cr3t-hmac-value")
	assert.Contains(t, out, "[REDACTED webhook-hmac hmac:")
	assert.Contains(t, out, r.Fingerprint([]byte("s3cr3t-hmac-value")))
}

func TestRedactCatchesSingleLinesOfAMultiLineSecret(t *testing.T) {
	var r Redactor
	armour := "-----BEGIN " + "PRIVATE KEY-----" // split so no key marker sits in the source
	key := armour + "\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEH\nBG0wawIBAQQgabcdefabcdef0123456789\n-----END PRIVATE KEY-----"
	r.Add("tls-key", []byte(key))
	out := r.Redact("journal: BG0wawIBAQQgabcdefabcdef0123456789 leaked")
	assert.NotContains(t, out, "BG0wawIBAQQgabcdefabcdef0123456789")
	// The PEM armour is not secret and must stay readable.
	assert.Equal(t, armour, r.Redact(armour))
}

// A short secret is redacted too, wherever it stands as a token of its
// own; inside a longer word it is ordinary text.
func TestRedactShortSecretsWhereTheyStandAlone(t *testing.T) {
	var r Redactor
	r.Add("registry_username", []byte("ci7"))
	out := r.Redact("user=ci7 pass, ci7,ci7 xci7y cc-ci7 ci7")
	assert.NotContains(t, strings.ReplaceAll(out, "xci7y", ""), " ci7", out)
	assert.Equal(t, 4, strings.Count(out, "[REDACTED registry_username"), out)
	assert.Contains(t, out, "xci7y", "inside a word it is not the secret")
	assert.Contains(t, out, "cc-ci7", "nor inside a hyphenated name")
}

// Every encoding the leak scanner searches is redacted as well.
func TestRedactEveryEncodingOfASecret(t *testing.T) {
	var r Redactor
	secret := `s3cr3t "value"/+?=\0123456789${x}`
	r.Add("token", []byte(secret))
	b := []byte(secret)
	jsonForm, err := json.Marshal(secret)
	require.NoError(t, err)
	for kind, form := range map[string]string{
		"raw": secret, "basic auth": base64.StdEncoding.EncodeToString(b), "base64url": base64.RawURLEncoding.EncodeToString(b),
		"hex": hex.EncodeToString(b), "HEX": strings.ToUpper(hex.EncodeToString(b)), "query": url.QueryEscape(secret),
		"path": url.PathEscape(secret), "json": string(jsonForm[1 : len(jsonForm)-1]),
		"drv": strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(secret), "nix": strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`).Replace(secret),
		"utf16le": string(utf16le(secret)),
	} {
		out := r.Redact("before " + form + " after")
		assert.Contains(t, out, "[REDACTED token", kind)
		assert.NotContains(t, out, form, "%s: %s", kind, out)
	}
}

func TestRedactLongestFirst(t *testing.T) {
	var r Redactor
	r.Add("short", []byte("abcdef"))
	r.Add("long", []byte("abcdef-ghijkl"))
	out := r.Redact("x abcdef-ghijkl y")
	assert.True(t, strings.Contains(out, "REDACTED long"), out)
	assert.NotContains(t, out, "ghijkl")
}

func TestNilRedactorPassesThrough(t *testing.T) {
	var r *Redactor
	assert.Equal(t, "plain", r.Redact("plain"))
}

func utf16le(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), 0)
	}
	return b
}
