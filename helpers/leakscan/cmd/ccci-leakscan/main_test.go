package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/leakscan"
)

func TestReportsFindingsWithCanaryProof(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "leak"), []byte("x=the-secret-value-42\n"), 0o644))
	in, _ := json.Marshal(leakscan.Needles(map[string]string{"s": "the-secret-value-42"}, 0, nil))
	rep := run([]string{dir}, strings.NewReader(string(in)))
	require.Empty(t, rep.Error)
	require.Len(t, rep.Findings, 1)
	assert.Equal(t, filepath.Join(dir, "leak"), rep.Findings[0].Where)
	assert.True(t, rep.Stats[0].Canary)
}

func TestBadInputIsAnError(t *testing.T) {
	assert.Contains(t, run([]string{t.TempDir()}, strings.NewReader("not json")).Error, "read needles from stdin")
	assert.Contains(t, run(nil, strings.NewReader("[]")).Error, "no directory")
	assert.Contains(t, run([]string{"/nonexistent/dir"}, strings.NewReader("[]")).Error, "canary")
}

func TestOnlyWhatOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "world"), []byte("x=the-secret-value-42\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "private"), []byte("x=the-secret-value-42\n"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "skip"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "skip", "world"), []byte("x=the-secret-value-42\n"), 0o644))
	in, _ := json.Marshal(leakscan.Needles(map[string]string{"s": "the-secret-value-42"}, 0, nil))
	rep := run([]string{"-readable-by-others", "-skip", filepath.Join(dir, "skip"), dir}, strings.NewReader(string(in)))
	require.Empty(t, rep.Error)
	require.Len(t, rep.Findings, 1)
	assert.Equal(t, filepath.Join(dir, "world"), rep.Findings[0].Where)
	assert.Contains(t, run([]string{"-bogus", dir}, strings.NewReader("[]")).Error, "arguments")
}
