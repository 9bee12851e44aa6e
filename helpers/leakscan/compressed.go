package leakscan

// Compressed files are searched inside: an initrd (zstd or xz cpio), a
// gzipped man page or tarball, an xz-compressed module. The stream is read
// once: the raw bytes are searched as they pass to the decompressor.

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// MaxDecompressed is the default bound on what one compressed stream may
// expand to (Scanner.MaxDecompressed): beyond it the rest is not searched,
// and the file is a finding (a bomb, or a file this scan cannot prove clean).
const MaxDecompressed = 1 << 30

// maxNesting bounds compression inside compression (a .gz of a .gz).
const maxNesting = 2

// Variants of findings that are not a secret: what the scan could not do.
const (
	// Unsearched: a file (or part of one) that was not searched — it could
	// not be read, or it expands beyond MaxDecompressed. It fails the scan.
	Unsearched = "unsearched"
	// Undecodable: a compressed stream that is corrupt past some point;
	// what decoded was searched, and so were its raw bytes. Reported in the
	// stats, not as a finding: test suites ship corrupt archives on purpose.
	Undecodable = "undecodable"
)

type compression struct {
	name  string
	magic []byte
	open  func(io.Reader) (io.ReadCloser, error)
}

var compressions = []compression{
	{"gzip", []byte{0x1f, 0x8b, 0x08}, func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }},
	{"xz", xzMagic, func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(newXZReader(r)), nil }},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, func(r io.Reader) (io.ReadCloser, error) {
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(MaxDecompressed))
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	}},
	{"bzip2", []byte("BZh"), func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(bzip2.NewReader(r)), nil }},
}

func detect(head []byte) *compression {
	for i := range compressions {
		if bytes.HasPrefix(head, compressions[i].magic) {
			return &compressions[i]
		}
	}
	return nil
}

// stream searches r, and what it decompresses to when it is compressed.
// The first chunk is read straight into the scan's buffer and its first
// bytes tell the compression: most files are small and raw, and passing
// them through another buffer first cost as much as the search.
func (s *Scanner) stream(where string, r io.Reader, depth int) ([]Finding, error) {
	buf := getBuffer(s.m.Overlap() + s.Chunk)
	defer putBuffer(buf)
	n, err := io.ReadFull(r, buf)
	c := detect(buf[:n])
	if c == nil || depth >= maxNesting {
		return s.rawFilled(where, buf, n, err, r)
	}
	whole := io.MultiReader(bytes.NewReader(buf[:n]), r) // buf is ours until we return
	if err != nil && err != io.ErrUnexpectedEOF {
		whole = io.MultiReader(bytes.NewReader(buf[:n]), errReader{err})
	}
	pr, pw := io.Pipe()
	inner := make(chan []Finding, 1)
	go func() {
		found := s.decompressed(fmt.Sprintf("%s (%s)", where, c.name), c, pr, depth)
		_, _ = io.Copy(io.Discard, pr) // the raw scan must not block on a decoder that stopped
		inner <- found
	}()
	found, err := s.raw(where, io.TeeReader(whole, pw))
	pw.CloseWithError(err)
	return append(found, <-inner...), err
}

// errReader is a stream that has failed.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// decompressed searches the decoded stream, bounded by MaxDecompressed.
func (s *Scanner) decompressed(where string, c *compression, r io.Reader, depth int) []Finding {
	dec, err := c.open(r)
	if err != nil {
		return []Finding{{Variant: Undecodable, Where: where, Problem: "not a valid " + c.name + " stream: " + err.Error()}}
	}
	defer dec.Close()
	lr := &io.LimitedReader{R: truncation{dec, c.name}, N: s.MaxDecompressed + 1}
	found, err := s.stream(where, lr, depth+1)
	if lr.N <= 0 {
		found = append(found, Finding{Variant: Unsearched, Where: where,
			Problem: fmt.Sprintf("decompresses to more than %d bytes: searched only that far", s.MaxDecompressed)})
	}
	var dict *DictionaryError
	switch {
	case errors.As(err, &dict): // not decoded at all: this scan cannot prove it clean
		found = append(found, Finding{Variant: Unsearched, Where: where, Problem: err.Error()})
	case err != nil:
		found = append(found, Finding{Variant: Undecodable, Where: where, Problem: err.Error()})
	}
	return found
}

// truncation names a decoder's unexpected end: the chunked scan reads with
// io.ReadFull, which cannot tell it from a short last chunk.
type truncation struct {
	r    io.Reader
	name string
}

func (t truncation) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("the %s stream ends before it is complete", t.name)
	}
	return n, err
}
