package secretforms

import (
	"bytes"
	"encoding/json"
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
