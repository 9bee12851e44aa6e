package remote

import (
	"bufio"
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The persistent shell's protocol: after each block the shell prints a
// newline, the run's random marker and the block's exit status. These are
// recorded outputs, good and bad.
func TestTheMarkerProtocolOnRecordedOutputs(t *testing.T) {
	const m = "__CCCI_DONE_0011223344556677__"
	for _, c := range []struct {
		name, stream string
		out          string
		code         int
		err          string
	}{
		{"no output, exit 0", "\n" + m + " 0\n", "", 0, ""},
		{"output, exit 3", "cloning…\ndone\n\n" + m + " 3\n", "cloning…\ndone\n", 3, ""},
		{"output without a final newline", "partial\n" + m + " 0\n", "partial", 0, ""},
		{"another run's marker is output", "__CCCI_DONE_ffffffffffffffff__ 0\n\n" + m + " 0\n", "__CCCI_DONE_ffffffffffffffff__ 0\n", 0, ""},
		{"the marker inside a line is output", "echo " + m + " 0\n\n" + m + " 1\n", "echo " + m + " 0\n", 1, ""},
		{"the next block's output stays unread", "\n" + m + " 0\nnext\n", "", 0, ""},
		{"the shell ended (set -e) before the marker", "half a line", "half a line", 0, "EOF"},
		{"status not a number", "\n" + m + " x1\n", "", 0, `bad exit status after the marker: "x1"`},
		{"status out of range", "\n" + m + " 256\n", "", 0, `bad exit status after the marker: "256"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, code, err := readUntilMarker(bufio.NewReader(strings.NewReader(c.stream)), m)
			if c.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.err)
				if c.err == "EOF" {
					assert.ErrorIs(t, err, io.EOF)
					assert.Equal(t, c.out, string(out), "what the block printed before the shell ended")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.out, string(out))
			assert.Equal(t, c.code, code)
		})
	}
}

// A machine that prints a line without end (256 MiB, no newline) costs the
// harness its bounded output, not the line: the block's output is cut at
// MaxOutput, saying so, the marker after it is still found, and what was
// allocated reading it stays far below the stream's size.
func TestALineWithoutEndIsReadInBoundedMemory(t *testing.T) {
	const m = "__CCCI_DONE_0011223344556677__"
	const size = 256 << 20
	stream := io.MultiReader(io.LimitReader(endless{}, size), strings.NewReader("\n"+m+" 0\n"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out, code, err := readUntilMarker(bufio.NewReaderSize(stream, 64<<10), m)
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.LessOrEqual(t, len(out), MaxOutput+200, "kept output is bounded")
	assert.Contains(t, string(out[len(out)-120:]), "more bytes dropped")
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("read %d MiB without a newline: allocated %d MiB, kept %d MiB", size>>20, allocated>>20, len(out)>>20)
	assert.Less(t, allocated, uint64(size/2), "allocation follows the 16 MiB bound (buffer growth and one copy), not the 256 MiB stream")
}

// endless is an io.Reader of 'x' bytes.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// A document's block that reads its standard input (a `read`, a `cat`, an
// installer asking a question) must not eat the commands the harness sends
// after it: the shell's stdin carries the whole session. Each block gets
// /dev/null instead, so the next block still runs and its output is its own.
func TestABlockThatReadsStdinCannotSwallowTheNext(t *testing.T) {
	ctx := context.Background()
	cl, err := Dial(ctx, localMachine(t))
	require.NoError(t, err)
	defer cl.Close()
	sh, err := cl.Shell(ctx)
	require.NoError(t, err)
	defer sh.Close()

	res, err := sh.Exec(ctx, `cat; answer=given`, 5*time.Second)
	require.NoError(t, err, "a block reading stdin ends at once, with nothing read")
	assert.Empty(t, string(res.Stdout))
	res, err = sh.Exec(ctx, `echo "next block runs, state kept: $answer"`, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "next block runs, state kept: given\n", string(res.Stdout))
}
