// Package size reads, adds and writes memory sizes as Incus writes
// limits.memory (4GiB, 512MB, 1073741824), exactly and failing closed.
package size

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
)

var units = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so "GiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50}, {"EiB", 1 << 60},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15}, {"EB", 1e18},
	{"B", 1},
}

// decimal is the only number syntax a size may use: no sign, no exponent,
// no Inf or NaN (strconv.ParseFloat would take all of those).
var decimal = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// Parse reads a size the way Incus writes limits.memory: "4GiB", "512MB",
// "1073741824", "1.5GiB". The arithmetic is exact and fails closed: a value
// that does not fit in an int64 of bytes, a fraction of a byte, a percentage,
// an exponent, Inf or NaN is an error, never a wrapped or rounded number.
func Parse(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	if strings.HasSuffix(s, "%") {
		return 0, fmt.Errorf("size %q is a percentage of the host; give an absolute size like 4GiB", s)
	}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	if !decimal.MatchString(num) {
		return 0, fmt.Errorf("size %q: not a positive size like 4GiB (digits, an optional fraction, a unit)", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q: not a number", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large (more than %d bytes)", s, int64(math.MaxInt64))
	}
	if n.Sign() <= 0 {
		return 0, fmt.Errorf("size %q: not a positive size like 4GiB", s)
	}
	return n.Int64(), nil
}

// Add adds byte counts, failing instead of wrapping around.
func Add(a, b int64) (int64, error) {
	if a < 0 || b < 0 || a > math.MaxInt64-b {
		return 0, fmt.Errorf("size sum %d + %d overflows", a, b)
	}
	return a + b, nil
}

// Format prints bytes in the largest binary unit that divides them evenly.
func Format(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return fmt.Sprintf("%d%s", n/u.m, u.s)
		}
	}
	if n >= 1<<30 {
		return fmt.Sprintf("%.2fGiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%dB", n)
}
