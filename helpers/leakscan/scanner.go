package leakscan

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"runtime"
	"sort"
	"sync"
	"time"
)

// Scanner searches for a fixed set of needles.
type Scanner struct {
	needles []Needle
	m       *Matcher
	Walk    Walk // which files Dir reads
	Workers int  // parallel files; default GOMAXPROCS
	// MaxDecompressed bounds one compressed stream's expansion.
	MaxDecompressed int64
	Chunk           int // read size; default 1 MiB
}

// New builds a scanner for the needles.
func New(needles []Needle) *Scanner {
	bs := make([][]byte, len(needles))
	token := make([]bool, len(needles))
	for i, n := range needles {
		bs[i], token[i] = n.Bytes, n.Token
	}
	return &Scanner{needles: needles, m: NewMatcher(bs, token), Workers: runtime.GOMAXPROCS(0), Chunk: 1 << 20, MaxDecompressed: MaxDecompressed}
}

// Stats say how much was read.
type Stats struct {
	Files    int64         `json:"files"`
	Bytes    int64         `json:"bytes"`
	Allowed  int64         `json:"allowed_in_sops"` // findings dropped: wholly inside a sops file's ENC[…] values or its sops metadata
	Duration time.Duration `json:"duration_ns"`
	Canary   bool          `json:"canary_found"`
	// Undecodable: compressed files corrupt past some point (what decoded
	// was searched); the first few, and how many.
	Undecodable  []string `json:"undecodable,omitempty"`
	UndecodableN int      `json:"undecodable_count,omitempty"`
}

// keepUndecodable moves the Undecodable notes out of found into st.
func (st *Stats) keepUndecodable(found []Finding) []Finding {
	out := found[:0]
	for _, f := range found {
		if f.Variant != Undecodable {
			out = append(out, f)
			continue
		}
		if st.UndecodableN++; len(st.Undecodable) < 10 {
			st.Undecodable = append(st.Undecodable, f.String())
		}
	}
	return out
}

// buffers are reused across files: a fresh megabyte per small file would
// cost more than the scan itself.
var buffers sync.Pool

func getBuffer(n int) []byte {
	if b, ok := buffers.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putBuffer(b []byte) { buffers.Put(&b) }

// scanReader streams r in chunks, carrying the matcher's overlap across them.
func scanReader(r io.Reader, m *Matcher, chunk int, emit func(Match)) error {
	buf := getBuffer(m.Overlap() + chunk)
	defer putBuffer(buf)
	n, err := io.ReadFull(r, buf)
	return scanFilled(buf, n, err, r, m, emit)
}

// scanFilled goes on from a first read into buf (n bytes, err) with the
// rest of r: the caller looked at the first bytes (stream, for a
// compression's magic) without copying them anywhere.
func scanFilled(buf []byte, n int, err error, r io.Reader, m *Matcher, emit func(Match)) error {
	ov := m.Overlap()
	carried := 0 // bytes at the start of buf from the previous chunk
	var base int64
	for {
		final := err == io.EOF || err == io.ErrUnexpectedEOF
		if n > 0 || (final && base > 0) { // the last call settles a token at the last chunk's end
			text := buf[:carried+n]
			off := base - int64(carried)
			m.Find(text, carried, base == 0, final, func(x Match) { emit(Match{Needle: x.Needle, At: int(off) + x.At}) })
			base += int64(n)
			keep := min(ov, len(text))
			copy(buf, text[len(text)-keep:])
			carried = keep
		}
		if final {
			return nil
		}
		if err != nil {
			return err
		}
		n, err = io.ReadFull(r, buf[carried:])
	}
}

// Reader scans one stream, and what it decompresses to; where names it in
// findings.
func (s *Scanner) Reader(where string, r io.Reader) ([]Finding, error) {
	return s.stream(where, r, 0)
}

// raw scans the bytes of one stream as they are.
func (s *Scanner) raw(where string, r io.Reader) ([]Finding, error) {
	buf := getBuffer(s.m.Overlap() + s.Chunk)
	defer putBuffer(buf)
	n, err := io.ReadFull(r, buf)
	return s.rawFilled(where, buf, n, err, r)
}

// rawFilled is raw after its first read into buf.
func (s *Scanner) rawFilled(where string, buf []byte, n int, err error, r io.Reader) ([]Finding, error) {
	var out []Finding
	err = scanFilled(buf, n, err, r, s.m, func(x Match) { out = append(out, s.finding(where, x, 0)) })
	return out, err
}

// finding is a match in where, at base+x.At.
func (s *Scanner) finding(where string, x Match, base int64) Finding {
	n := s.needles[x.Needle]
	variant := n.Variant
	if n.Token {
		variant += ", as a token"
	}
	return Finding{Secret: n.Secret, Variant: variant, Where: where, Offset: base + int64(x.At), Length: int64(len(n.Bytes))}
}

const canaryName = "leakscan-canary"

func withoutCanary(fs []Finding) ([]Finding, bool) {
	out := fs[:0]
	seen := false
	for _, f := range fs {
		if f.Secret == canaryName {
			seen = true
			continue
		}
		out = append(out, f)
	}
	return out, seen
}

func sortFindings(fs []Finding) {
	sort.Slice(fs, func(a, b int) bool {
		if fs[a].Where != fs[b].Where {
			return fs[a].Where < fs[b].Where
		}
		return fs[a].Offset < fs[b].Offset
	})
}

// canaryNeedle is a random needle no real data contains.
func canaryNeedle() Needle {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return Needle{Secret: canaryName, Variant: "raw", Bytes: []byte("ccci-canary-" + hex.EncodeToString(b))}
}
