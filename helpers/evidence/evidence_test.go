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

// The evidence is never written through a symlink: one planted where
// REVIEW.md or its chain goes (pointing at a file the attacker wants
// written, or a chain of their own) is refused, naming the path, and its
// target is left as it was; neither file gets the entry.
func TestEvidenceIsNeverWrittenThroughASymlink(t *testing.T) {
	for _, linked := range []string{"REVIEW.md", "REVIEW.jsonl"} {
		t.Run(linked, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			require.NoError(t, os.WriteFile(victim, []byte("untouched\n"), 0o644))
			require.NoError(t, os.Symlink(victim, filepath.Join(dir, linked)))
			p := PathsFor(filepath.Join(dir, "REVIEW.md"))
			_, err := Append(p, Entry{RunID: "r1", Outcome: "pass"}, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), filepath.Join(dir, linked))
			b, err := os.ReadFile(victim)
			require.NoError(t, err)
			assert.Equal(t, "untouched\n", string(b), "the symlink's target is unchanged")
			for _, f := range []string{p.Markdown, p.JSONL} {
				if st, err := os.Lstat(f); err == nil && st.Mode().IsRegular() {
					b, _ := os.ReadFile(f)
					assert.NotContains(t, string(b), "r1", "%s got the entry", f)
				}
			}
		})
	}
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
