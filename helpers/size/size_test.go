package size

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Sizes as Incus writes them; anything else (Inf, exponents, a sign, a
// fraction of a byte, an overflow) is refused, never rounded or wrapped.
func TestParseAndFormat(t *testing.T) {
	for in, want := range map[string]int64{"4GiB": 4 << 30, "512MiB": 512 << 20, "1GB": 1e9, "1073741824": 1 << 30, "1.5GiB": 3 << 29} {
		got, err := Parse(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"Inf", "+Inf", "NaN", "1e30GiB", "0x10GiB", "-1GiB", "0", "0.5B", "8EiB", "9223372036854775808"} {
		_, err := Parse(in)
		assert.Error(t, err, "%q must be refused", in)
	}
	n, err := Parse("9223372036854775807")
	require.NoError(t, err)
	_, err = Add(n, 1)
	assert.ErrorContains(t, err, "overflows")
	assert.Equal(t, "4GiB", Format(4<<30))
	assert.Equal(t, "12GiB", Format(12<<30))
	assert.Equal(t, "512MiB", Format(512<<20))
}
