package leakscan

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// naive is the reference: every occurrence of every needle.
func naive(text []byte, needles [][]byte) []Match {
	var out []Match
	for i, n := range needles {
		for p := 0; p+len(n) <= len(text); p++ {
			if bytes.Equal(text[p:p+len(n)], n) {
				out = append(out, Match{i, p})
			}
		}
	}
	return sortMatches(out)
}

func sortMatches(ms []Match) []Match {
	sort.Slice(ms, func(a, b int) bool {
		if ms[a].At != ms[b].At {
			return ms[a].At < ms[b].At
		}
		return ms[a].Needle < ms[b].Needle
	})
	return ms
}

// Random texts over a tiny alphabet, with needles planted and overlapping:
// the matcher finds exactly what the naive search finds, once each.
func TestMatcherAgreesWithNaiveSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		alpha := []byte("ab")
		if round%3 == 0 {
			alpha = []byte("abcdefgh")
		}
		rnd := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = alpha[rng.IntN(len(alpha))]
			}
			return b
		}
		var needles [][]byte
		for i := 0; i < 1+rng.IntN(6); i++ {
			needles = append(needles, rnd(8+rng.IntN(10)))
		}
		text := rnd(rng.IntN(400))
		for _, n := range needles { // plant some
			if len(text) > len(n) && rng.IntN(2) == 0 {
				copy(text[rng.IntN(len(text)-len(n)):], n)
			}
		}
		m := NewMatcher(needles)
		var got []Match
		m.Find(text, 0, func(x Match) { got = append(got, x) })
		require.Equal(t, naive(text, needles), sortMatches(got), "round %d", round)
	}
}

// Streaming in chunks with the overlap finds the same as one pass.
func TestChunkedScanMatchesWholeScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	needles := [][]byte{[]byte("secret-one-0123"), []byte("another-secret-xyz-987654"), []byte("abababababab")}
	text := make([]byte, 20000)
	for i := range text {
		text[i] = "abxyz-"[rng.IntN(6)]
	}
	for i := 0; i < 40; i++ {
		n := needles[rng.IntN(len(needles))]
		copy(text[rng.IntN(len(text)-len(n)):], n)
	}
	m := NewMatcher(needles)
	want := naive(text, needles)
	for _, chunk := range []int{64, 100, 1000, 4096} {
		var got []Match
		err := scanReader(bytes.NewReader(text), m, chunk, func(x Match) { got = append(got, x) })
		require.NoError(t, err)
		assert.Equal(t, want, sortMatches(got), "chunk %d", chunk)
	}
}

// BenchmarkScan measures the single-core scan of text with the needles a
// target's secrets expand to (make bench compares with ripgrep).
func BenchmarkScan(b *testing.B) {
	secrets := map[string]string{}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 8; i++ {
		v := make([]byte, 32)
		for j := range v {
			v[j] = "0123456789abcdef"[rng.IntN(16)]
		}
		secrets[string(rune('a'+i))+"-secret"] = string(v)
	}
	s := New(Needles(secrets, 0, nil))
	text := make([]byte, 8<<20)
	for i := range text {
		text[i] = byte(rng.UintN(256))
	}
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = s.Reader("bench", bytes.NewReader(text))
	}
	b.ReportMetric(float64(len(s.needles)), "needles")
}
