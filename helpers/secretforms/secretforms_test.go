package secretforms

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func variants(fs []Form) map[string]string {
	m := map[string]string{}
	for _, f := range fs {
		m[f.Variant] = string(f.Bytes)
	}
	return m
}

func TestEscapedFormsAreWhatWritersPrint(t *testing.T) {
	s := "pa\"ss\\w${x}\n\x01\u2028"
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(s))
	js := bytes.TrimSpace(buf.Bytes())

	got := variants(Escaped(s))
	assert.Equal(t, string(js[1:len(js)-1]), got["json-escaped"], "as encoding/json writes it")
	assert.Equal(t, "pa\\\"ss\\\\w${x}\\n\x01\u2028", got["drv-escaped"], "as a .drv (ATerm) string")
	assert.Equal(t, "pa\\\"ss\\\\w\\${x}\\n\x01\u2028", got["nix-escaped"], "as a Nix string literal")
}

func TestAPlainSecretHasNoEscapedForm(t *testing.T) {
	assert.Empty(t, Escaped("plain-secret-value-123"))
}

func TestUTF16BothByteOrders(t *testing.T) {
	got := variants(UTF16("ab€"))
	assert.Equal(t, "a\x00b\x00\xac\x20", got["utf16le"])
	assert.Equal(t, "\x00a\x00b\x20\xac", got["utf16be"])
}

// Wherever line wrapping breaks a secret's base64 (at any alignment inside
// a longer text), every unbroken run of 15 characters of it holds one of
// the secret's base64-wrapped forms.
func TestEveryRunOfFifteenBase64CharactersHoldsAFragment(t *testing.T) {
	for n := 12; n <= 40; n++ {
		rng := rand.New(rand.NewPCG(uint64(n), 1))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(33 + rng.IntN(94))
		}
		secret := string(b)
		frags := map[string]bool{}
		for _, f := range All(secret) {
			if f.Variant == "base64-wrapped" {
				frags[string(f.Bytes)] = true
			}
		}
		for shift := 0; shift < 3; shift++ {
			std := base64Inner(base64.StdEncoding, []byte(secret), shift)
			for r := 0; r+15 <= len(std); r++ {
				held := false
				for i := r; i+WrapFragment <= r+15; i++ {
					held = held || frags[string(std[i:i+WrapFragment])]
				}
				assert.True(t, held, "%d bytes, shift %d: the run at %d holds no fragment", n, shift, r)
			}
		}
	}
}
