package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/leakscan"
)

// The bench's ground truth, on a small tree: every planted leak lands in
// the file plantFiles names, and the scanner the bench measures finds each
// one (a "found 9/9" in its table means what it says).
func TestEveryPlantedLeakIsInTheTreeAndFound(t *testing.T) {
	sec := secrets()
	pl := plants(sec)
	dir := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, generate(dir, 128<<20, pl))
	where := plantFiles(dir, pl)
	require.Len(t, where, len(pl), "a file for each planted leak")

	findings, _, err := leakscan.New(leakscan.Needles(sec, 0, nil)).DirProven(context.Background(), dir)
	require.NoError(t, err)
	var files []byte
	for _, f := range findings {
		files = append(files, f.Where+"\n"...)
	}
	found := foundPlants("a line-based peer", files, where)
	assert.Equal(t, "none", missed(pl, found), "planted leaks the scanner missed")
	assert.Contains(t, missed(pl, found[1:]), found[0], "missed names a leak that was not found")
}
