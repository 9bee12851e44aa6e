package redact

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedactReplacesSecretWithFingerprint(t *testing.T) {
	var r Redactor
	r.Add("webhook-hmac", []byte("s3cr3t-hmac-value\n"))
	out := r.Redact("curl -H 'X-Sig: s3cr3t-hmac-value' done")
	assert.NotContains(t, out, "s3cr3t-hmac-value")
	assert.Contains(t, out, "[REDACTED webhook-hmac sha256:")
	assert.Contains(t, out, Fingerprint([]byte("s3cr3t-hmac-value")))
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

func TestRedactIgnoresValuesTooShortToMatter(t *testing.T) {
	var r Redactor
	r.Add("flag", []byte("1"))
	assert.Equal(t, "exit 1", r.Redact("exit 1"))
	assert.Equal(t, 0, r.Len())
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
