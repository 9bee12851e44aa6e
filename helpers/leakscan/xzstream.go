package leakscan

// The xz container, read block by block as the format's specification lays
// it out (tukaani.org/xz/xz-file-format.txt: stream header, blocks, index,
// stream footer, stream padding), each block's LZMA2 data decoded by
// github.com/ulikunitz/xz/lzma. Not xz.NewReader: it allocates whatever
// dictionary a block header asks for — up to 4 GiB, from a 108-byte file —
// where this reader first compares it with MaxXZDictionary.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// MaxXZDictionary bounds the LZMA2 dictionary a block may ask for: twice
// the largest of xz's presets (-9, 64 MiB). A block asking for more is not
// decoded and the file is a finding (Unsearched): this scan cannot prove it
// clean within its memory.
const MaxXZDictionary = 128 << 20

// DictionaryError is a block whose dictionary is over MaxXZDictionary.
type DictionaryError struct{ Asked int64 }

func (e *DictionaryError) Error() string {
	return fmt.Sprintf("an xz block asks for a %d-byte LZMA2 dictionary, over the scanner's bound of %d: not decoded", e.Asked, MaxXZDictionary)
}

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// xzReader decodes concatenated xz streams.
type xzReader struct {
	in       *xzInput
	check    int       // bytes of each block's check (by the stream's check type)
	inStream bool      // between a stream header and its footer
	block    io.Reader // the current block's LZMA2 data, nil between blocks
	started  int64     // where the block began (its header's first byte)
	hdrSize  int64
	err      error
}

func newXZReader(r io.Reader) *xzReader {
	return &xzReader{in: &xzInput{r: bufio.NewReaderSize(r, 32<<10)}}
}

func (x *xzReader) Read(p []byte) (int, error) {
	for x.err == nil {
		if x.block == nil {
			x.err = x.next()
			continue
		}
		n, err := x.block.Read(p)
		switch {
		case err == io.EOF:
			x.block, x.err = nil, x.endBlock()
		case err != nil:
			x.err = err
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, x.err
}

// next reads up to the next block's data: a stream header, an index and
// footer, stream padding. io.EOF when the input ends between streams.
func (x *xzReader) next() error {
	if !x.inStream {
		for { // stream padding: zeros, four at a time
			b, err := x.in.r.Peek(1)
			if len(b) == 0 {
				if errors.Is(err, io.EOF) && x.in.n > 0 {
					return io.EOF
				}
				return io.ErrUnexpectedEOF
			}
			if b[0] != 0 {
				break
			}
			if _, err := io.ReadFull(x.in, make([]byte, 4)); err != nil {
				return io.ErrUnexpectedEOF
			}
		}
		var h [12]byte
		if _, err := io.ReadFull(x.in, h[:]); err != nil {
			return io.ErrUnexpectedEOF
		}
		if !bytes.Equal(h[:6], xzMagic) || h[6] != 0 || h[7] > 0x0f {
			return errors.New("xz: not a stream header")
		}
		x.check, x.inStream = checkSize(h[7]), true
	}
	x.started = x.in.n
	first, err := x.in.ReadByte()
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	if first == 0 {
		return x.index()
	}
	return x.blockHeader(first)
}

// blockHeader reads a block header and opens its LZMA2 data.
func (x *xzReader) blockHeader(first byte) error {
	x.hdrSize = int64(first+1) * 4
	h := make([]byte, x.hdrSize)
	h[0] = first
	if _, err := io.ReadFull(x.in, h[1:]); err != nil {
		return io.ErrUnexpectedEOF
	}
	flags, r := h[1], bytes.NewReader(h[2:len(h)-4])
	for _, present := range []byte{0x40, 0x80} { // compressed, uncompressed size
		if flags&present != 0 {
			if _, err := binary.ReadUvarint(r); err != nil {
				return errors.New("xz: block header: a size does not parse")
			}
		}
	}
	if flags&0x03 != 0 { // more than one filter: what xz.NewReader does not read either
		return errors.New("xz: block header: only the LZMA2 filter alone is supported")
	}
	id, err1 := binary.ReadUvarint(r)
	size, err2 := binary.ReadUvarint(r)
	code, err3 := r.ReadByte()
	if err1 != nil || err2 != nil || err3 != nil || id != 0x21 || size != 1 {
		return errors.New("xz: block header: only the LZMA2 filter alone is supported")
	}
	dict, err := lzma.DecodeDictCap(code)
	if err != nil {
		return fmt.Errorf("xz: block header: %w", err)
	}
	if dict > MaxXZDictionary {
		return &DictionaryError{Asked: dict}
	}
	x.block, err = lzma.Reader2Config{DictCap: int(max(dict, lzma.MinDictCap))}.NewReader2(x.in)
	return err
}

// endBlock reads the block's padding (to four bytes) and its check.
func (x *xzReader) endBlock() error {
	pad := (4 - (x.in.n-x.started)%4) % 4
	_, err := io.CopyN(io.Discard, x.in, pad+int64(x.check))
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// index reads the index (its indicator already read) and the stream footer.
func (x *xzReader) index() error {
	records, err := binary.ReadUvarint(x.in)
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	for i := uint64(0); i < records; i++ { // each at least two bytes: bounded by the input
		if _, err := binary.ReadUvarint(x.in); err != nil {
			return io.ErrUnexpectedEOF
		}
		if _, err := binary.ReadUvarint(x.in); err != nil {
			return io.ErrUnexpectedEOF
		}
	}
	pad := (4 - (x.in.n-x.started)%4) % 4
	var footer [12]byte
	if _, err := io.CopyN(io.Discard, x.in, pad+4); err != nil { // padding, CRC32
		return io.ErrUnexpectedEOF
	}
	if _, err := io.ReadFull(x.in, footer[:]); err != nil {
		return io.ErrUnexpectedEOF
	}
	if !bytes.Equal(footer[10:], []byte("YZ")) {
		return errors.New("xz: not a stream footer")
	}
	x.inStream = false
	return nil
}

// checkSize is the size of a block's check for the stream's check type.
func checkSize(t byte) int {
	if t == 0 {
		return 0
	}
	return 4 << ((t - 1) / 3)
}

// xzInput is the compressed input, counted (padding is to four bytes of the block or index).
type xzInput struct {
	r *bufio.Reader
	n int64
}

func (c *xzInput) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *xzInput) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}
