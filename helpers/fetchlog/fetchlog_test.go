package fetchlog

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEntriesAreWrittenAndReadFromATime(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fetches.jsonl")
	w, err := Open(p)
	require.NoError(t, err)
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	require.NoError(t, w.Record(Entry{Time: t0, Remote: "10.99.0.5", Protocol: "http", Repo: "good/cc-ci.git"}))
	require.NoError(t, w.Record(Entry{Time: t0.Add(time.Minute), Remote: "10.99.0.6", Protocol: "ssh", Repo: "tools/x.git"}))
	got, err := Read(p, t0.Add(time.Second))
	require.NoError(t, err)
	require.Len(t, got, 1, "only what came after since")
	assert.Equal(t, "tools/x.git", got[0].Repo)
	assert.NoError(t, (*Writer)(nil).Record(Entry{}), "no log: nothing recorded, no error")

	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(`{"time":"2026-12-07T06:00:00Z","remote":"a","repo":"r"}`+"\n{not json\n"), 0o644))
	_, err = Read(bad, t0)
	assert.ErrorContains(t, err, "line 2: not an entry")
	link := filepath.Join(t.TempDir(), "link.jsonl")
	require.NoError(t, os.Symlink(p, link))
	_, err = Read(link, t0)
	assert.Error(t, err, "a symlinked log is refused")
	_, err = Open(link)
	assert.Error(t, err, "… for writing too")
}

func TestRepoOfEveryGitURLForm(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.99.0.1:8418/good/cc-ci.git":            "good/cc-ci.git",
		"https://git.coopcloud.tech/cc-ci/base.git/":      "cc-ci/base.git",
		"ssh://git@10.99.0.1:2222/good/cc-ci-secrets.git": "good/cc-ci-secrets.git",
		"git@git.coopcloud.tech:cc-ci/secrets.git":        "cc-ci/secrets.git",
	} {
		got, err := RepoOf(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := RepoOf("/srv/git/base.git")
	assert.Error(t, err)
	assert.Equal(t, "fe80::1", RemoteOf("[fe80::1%incusbr0]:4242"))
	assert.Equal(t, "10.99.0.5", RemoteOf("10.99.0.5:4242"))
}
