package leakscan

import (
	"bytes"
	"encoding/binary"

	"github.com/cc-ci/acceptance/helpers/secretforms"
)

// Matcher finds every occurrence of many fixed needles in one pass.
//
// Every needle is at least m bytes long. Each needle's 4-byte grams at
// offsets 0..m-4 are indexed; the text is probed only at every (m-3)th
// position. An occurrence at p spans p..p+m-1, so exactly one probe lands in
// p..p+m-4, at a gram the needle indexed: no occurrence is missed, and the
// text costs one probe per m-3 bytes. A bitset over a hash of the gram turns
// most probes away before any map lookup.
//
// A token needle (a secret too short to search for inside other text)
// matches only where it stands as a whole token: the bytes either side of
// it, if any, are not word bytes (secretforms.WordByte), the rule the
// redactor applies to the same secrets.
type Matcher struct {
	needles [][]byte
	token   []bool
	minLen  int
	maxLen  int
	stride  int
	filter  *[filterBits / 64]uint64 // bitset over gram hashes
	grams   map[uint32][]anchor      // gram → (needle, offset of the gram in it)
}

type anchor struct {
	needle int32
	offset int32
}

const (
	filterBits  = 1 << 20 // 128 KiB: fits in L2, few false hits for thousands of grams
	filterShift = 32 - 20 // a gram's hash is its top 20 bits
)

// NewMatcher indexes needles; each must be at least 4 bytes (callers enforce
// a larger MinLen: the longer the shortest needle, the faster the scan).
// token[i] marks needle i a token needle; token may be nil.
func NewMatcher(needles [][]byte, token []bool) *Matcher {
	m := &Matcher{needles: needles, minLen: 1 << 30, filter: new([filterBits / 64]uint64), grams: map[uint32][]anchor{}}
	if token != nil {
		m.token = make([]bool, len(needles))
		copy(m.token, token)
	}
	for _, n := range needles {
		m.minLen = min(m.minLen, len(n))
		m.maxLen = max(m.maxLen, len(n))
	}
	if len(needles) == 0 {
		m.minLen = 4
	}
	m.stride = m.minLen - 3
	for i, n := range needles {
		for off := 0; off <= m.minLen-4; off++ {
			g := binary.LittleEndian.Uint32(n[off:])
			m.grams[g] = append(m.grams[g], anchor{int32(i), int32(off)})
			h := hash(g)
			m.filter[h>>6] |= 1 << (h & 63)
		}
	}
	return m
}

func hash(g uint32) uint32 { return (g * 0x9E3779B1) >> filterShift }

// Overlap is how many trailing bytes of a chunk must be carried into the
// next one so that no occurrence across the boundary is lost, and a token
// needle's occurrence keeps the byte before it.
func (m *Matcher) Overlap() int { return m.maxLen + 1 }

// Match is one occurrence: the needle index and its start in the text.
type Match struct {
	Needle int
	At     int
}

// Find reports every occurrence in text that ends after minEnd. When text
// begins with the Overlap() bytes carried from the previous chunk, minEnd is
// that length: occurrences wholly inside it were reported with that chunk.
// start says text begins the stream, final that it ends it: a token
// needle's occurrence at the end of a chunk that is not the last waits for
// the next byte, so it is reported with the next chunk (where it ends at
// minEnd) or the stream's final call.
func (m *Matcher) Find(text []byte, minEnd int, start, final bool, emit func(Match)) {
	if len(m.needles) == 0 || len(text) < m.minLen {
		return
	}
	// The probe loop is the scan's whole cost on clean text: one load, one
	// multiply, one bit of an L2-resident filter per stride bytes.
	filter, stride := m.filter, m.stride
	for i := 0; i+4 <= len(text); i += stride {
		g := binary.LittleEndian.Uint32(text[i : i+4])
		if h := hash(g); filter[h>>6]&(1<<(h&63)) != 0 {
			m.verify(text, i, g, minEnd, start, final, emit)
		}
	}
}

// verify reports the needles whose indexed gram g is at i of text, where
// they occur whole (Find's rules).
func (m *Matcher) verify(text []byte, i int, g uint32, minEnd int, start, final bool, emit func(Match)) {
	for _, a := range m.grams[g] {
		p := i - int(a.offset)
		n := m.needles[a.needle]
		end := p + len(n)
		if p < 0 || end > len(text) {
			continue
		}
		if m.token != nil && m.token[a.needle] {
			if end < minEnd || !m.standsAlone(text, p, end, start, final) {
				continue
			}
		} else if end <= minEnd {
			continue
		}
		if bytes.Equal(text[p:end], n) {
			emit(Match{Needle: int(a.needle), At: p})
		}
	}
}

// standsAlone says text[p:end] is a whole token: no word byte either side,
// and its end known (the next byte read, or the stream's end).
func (m *Matcher) standsAlone(text []byte, p, end int, start, final bool) bool {
	switch {
	case p > 0 && secretforms.WordByte(text[p-1]), p == 0 && !start:
		return false
	case end < len(text):
		return !secretforms.WordByte(text[end])
	default:
		return final
	}
}
