package leakscan

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/cc-ci/acceptance/helpers/secretforms"

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
		m := NewMatcher(needles, nil)
		var got []Match
		m.Find(text, 0, true, true, func(x Match) { got = append(got, x) })
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
	m := NewMatcher(needles, nil)
	want := naive(text, needles)
	for _, chunk := range []int{64, 100, 1000, 4096} {
		var got []Match
		err := scanReader(bytes.NewReader(text), m, chunk, func(x Match) { got = append(got, x) })
		require.NoError(t, err)
		assert.Equal(t, want, sortMatches(got), "chunk %d", chunk)
	}
}

// A token needle is found only where no word byte touches it, in one pass
// and streamed in chunks of every size (its end waits for the next byte).
func TestATokenNeedleIsFoundWhereItStandsAlone(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	needles := [][]byte{[]byte("bot7"), []byte("ab-cd"), []byte("a-longer-needle-xyz")}
	token := []bool{true, true, false}
	naiveTokens := func(text []byte) []Match {
		var out []Match
		for _, x := range naive(text, needles) {
			end := x.At + len(needles[x.Needle])
			if token[x.Needle] && (x.At > 0 && secretforms.WordByte(text[x.At-1]) || end < len(text) && secretforms.WordByte(text[end])) {
				continue
			}
			out = append(out, x)
		}
		return out
	}
	m := NewMatcher(needles, token)
	for round := 0; round < 200; round++ {
		text := make([]byte, rng.IntN(300))
		for i := range text {
			text[i] = "bot7 a-:"[rng.IntN(8)]
		}
		for i := 0; i < 6 && len(text) > 20; i++ {
			n := needles[rng.IntN(len(needles))]
			copy(text[rng.IntN(len(text)-len(n)+1):], n)
		}
		want := naiveTokens(text)
		var whole []Match
		m.Find(text, 0, true, true, func(x Match) { whole = append(whole, x) })
		require.Equal(t, want, sortMatches(whole), "round %d, one pass", round)
		for chunk := 1; chunk <= 40; chunk++ {
			var got []Match
			require.NoError(t, scanReader(bytes.NewReader(text), m, chunk, func(x Match) { got = append(got, x) }))
			require.Equal(t, want, sortMatches(got), "round %d, chunk %d", round, chunk)
		}
	}
}

// A secret under DefaultMinLen is searched as a token: "bot7" in
// "user: bot7" is the secret, in "robot7s" it is not; one under
// MinTokenLen is not searched at all and is what TooShort names.
func TestAShortSecretIsSearchedAsAToken(t *testing.T) {
	secrets := map[string]string{"registry_username": "bot7", "tiny": "b7x"}
	var warned []string
	s := New(Needles(secrets, 0, func(f string, a ...any) { warned = append(warned, fmt.Sprintf(f, a...)) }))
	for text, found := range map[string]bool{
		"user: bot7\n": true, "bot7": true, `{"u":"bot7"}`: true, "robot7s": false, "bot7x": false, "x-bot7": false, "bot7_": false,
		"Ym90Nw==": false, // its base64 is only pieces of a longer encoding (secretforms.All): not searched as a token
	} {
		got, err := s.Reader("text", strings.NewReader(text))
		require.NoError(t, err)
		if !found {
			assert.Empty(t, got, text)
			continue
		}
		require.Len(t, got, 1, text)
		assert.Equal(t, "registry_username (raw, as a token) in text at offset "+fmt.Sprint(strings.Index(text, "bot7")), got[0].String())
	}
	assert.Equal(t, []string{"tiny is 3 bytes"}, TooShort(secrets, 0))
	assert.Equal(t, []string{"leakscan: tiny is 3 bytes, shorter than 4: not searched for"}, warned)
}

// BenchmarkScan measures the single-core scan of text with the needles a
// target's secrets expand to (make bench compares with ripgrep).
func BenchmarkScan(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := New(Needles(randomSecrets(rng, 32, "0123456789abcdef"), 0, nil))
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

// BenchmarkFind is the matcher alone over store-like text (words and
// random bytes), with the needles of eight secrets in every form: the
// search's own cost, beside the read it is paired with.
func BenchmarkFind(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	ns := Needles(randomSecrets(rng, 24, "abcdefghijklmnopqrstuvwxyz"), 0, nil)
	bs := make([][]byte, len(ns))
	for i, n := range ns {
		bs[i] = n.Bytes
	}
	m := NewMatcher(bs, nil)
	text := make([]byte, 8<<20)
	words := []string{"nix ", "store ", "lib ", "the ", "service\n", "config ", "of "}
	for i := 0; i < len(text); {
		if rng.IntN(3) == 0 {
			for j := 0; j < 64 && i < len(text); j, i = j+1, i+1 {
				text[i] = byte(rng.UintN(256))
			}
			continue
		}
		i += copy(text[i:], words[rng.IntN(len(words))])
	}
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Find(text, 0, true, true, func(Match) {})
	}
	b.ReportMetric(float64(len(bs)), "needles")
}

// randomSecrets are eight secrets of size characters of alphabet.
func randomSecrets(rng *rand.Rand, size int, alphabet string) map[string]string {
	secrets := map[string]string{}
	for i := 0; i < 8; i++ {
		v := make([]byte, size)
		for j := range v {
			v[j] = alphabet[rng.IntN(len(alphabet))]
		}
		secrets[string(rune('a'+i))+"-secret"] = string(v)
	}
	return secrets
}
