package evidence

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEntriesChainAndEditsAreDetected(t *testing.T) {
	p := PathsFor(filepath.Join(t.TempDir(), "REVIEW.md"))
	a, err := Append(p, Entry{RunID: "r1", Outcome: "pass", Tests: []Test{{Name: "TestC4", Result: "pass", Seconds: 1.5}}}, nil)
	require.NoError(t, err)
	b, err := Append(p, Entry{RunID: "r2", Outcome: "fail", Tests: []Test{{Name: "TestC2", Result: "fail"}}}, nil)
	require.NoError(t, err)
	assert.Equal(t, "", a.Prev)
	assert.Equal(t, a.Hash, b.Prev)
	require.NoError(t, Verify(p.JSONL))

	md, err := os.ReadFile(p.Markdown)
	require.NoError(t, err)
	assert.Contains(t, string(md), "## Run r1")
	assert.Contains(t, string(md), "| TestC2 | FAIL | 0.0 |")

	// Change a past result: the chain says so.
	raw, err := os.ReadFile(p.JSONL)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.JSONL, []byte(strings.Replace(string(raw), `"result":"pass"`, `"result":"fail"`, 1)), 0o644))
	err = Verify(p.JSONL)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "entry 1 (run r1): content changed")

	// Delete the first entry: the second no longer links.
	lines := strings.SplitN(string(raw), "\n", 2)
	require.NoError(t, os.WriteFile(p.JSONL, []byte(lines[1]), 0o644))
	err = Verify(p.JSONL)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "chain broken")
}

// Runs that share a chain append one at a time: however many at once, the
// chain holds (each entry links to the one before it in the file).
func TestConcurrentAppendsKeepTheChain(t *testing.T) {
	p := PathsFor(filepath.Join(t.TempDir(), "REVIEW.md"))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Append(p, Entry{RunID: fmt.Sprintf("r%d", i), Outcome: "pass"}, nil)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	require.NoError(t, Verify(p.JSONL))
	es, err := Read(p.JSONL)
	require.NoError(t, err)
	assert.Len(t, es, 16)
}

// The evidence committed in this repository must still chain: an edited or
// deleted entry fails the project's tests.
func TestTheRepositoryEvidenceChainHolds(t *testing.T) {
	require.NoError(t, Verify("../../REVIEW.jsonl"))
}
