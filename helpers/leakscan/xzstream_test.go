package leakscan

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The audit's proof of concept: a small xz file whose block header asks for
// a 4 GiB dictionary (code 40). It is not decoded — what this scan cannot
// search is a finding (Unsearched), not a pass — and reading it costs the
// scanner no more than a small bound of memory (the header's 4 GiB was
// allocated before).
func TestAnXZDictionaryOverTheBoundIsAFindingAndCostsNoMemory(t *testing.T) {
	s := scanner(t, map[string]string{"webhook_hmac": secret})
	blob := compress(t, "xz", []byte("nothing secret here\n"))
	at := bytes.Index(blob[12:], []byte{0x21, 0x01}) // the LZMA2 filter's id and property size, in the first block header
	require.GreaterOrEqual(t, at, 0)
	blob[12+at+2] = 40
	hdr := blob[12 : 12+(int(blob[12])+1)*4] // a valid header: its CRC32 matches
	binary.LittleEndian.PutUint32(hdr[len(hdr)-4:], crc32.ChecksumIEEE(hdr[:len(hdr)-4]))
	require.Less(t, len(blob), 200)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got := findIn(t, s, blob)
	runtime.ReadMemStats(&after)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(MaxXZDictionary/4), "bytes allocated to read a %d-byte file", len(blob))
	require.Len(t, got, 1, findingsText(got))
	assert.Equal(t, Unsearched, got[0].Variant)
	assert.Contains(t, got[0].String(), "asks for a 4294967295-byte LZMA2 dictionary, over the scanner's bound")
	assert.Equal(t, "blob (xz)", got[0].Where)
}

// What xz itself writes is read: several blocks, several streams with
// padding between them, each check type; a secret in the last block of the
// second stream is found inside. A cut file is searched as far as it goes.
func TestXZFilesAreReadAsTheFormatLaysThemOut(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("no xz on this machine")
	}
	s := scanner(t, map[string]string{"webhook_hmac": secret})
	filler := bytes.Repeat([]byte("070701 cpio padding "), 20000) // 400 kB: several 64 KiB blocks
	xzCLI := func(data []byte, args ...string) []byte {
		cmd := exec.Command("xz", append([]string{"-c", "--block-size=65536"}, args...)...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		require.NoError(t, err)
		return out
	}
	for _, check := range []string{"none", "crc32", "crc64", "sha256"} {
		t.Run(check, func(t *testing.T) {
			first := xzCLI(filler, "-6", "--check="+check)
			second := xzCLI(append(append([]byte{}, filler...), "x="+secret+"\n"...), "-9", "--check="+check)
			blob := append(append(first, 0, 0, 0, 0), second...) // stream padding between them
			var inside []Finding
			for _, f := range findIn(t, s, blob) {
				if f.Secret == "webhook_hmac" && f.Where == "blob (xz)" {
					inside = append(inside, f)
				}
			}
			assert.Len(t, inside, 1, "the secret inside the second stream")
		})
	}
	t.Run("cut short", func(t *testing.T) {
		blob := xzCLI(append([]byte("x="+secret+"\n"), filler...), "-6")
		got := findIn(t, s, blob[:len(blob)/2])
		text := findingsText(got)
		assert.Contains(t, text, "webhook_hmac", "what decoded was searched")
		assert.True(t, strings.Contains(text, "undecodable") || strings.Contains(text, "ends before it is complete"), text)
	})
}
