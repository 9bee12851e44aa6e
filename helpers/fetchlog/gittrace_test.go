package fetchlog_test

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/fetchlog"
	"github.com/cc-ci/acceptance/helpers/gitserver"
)

// git's own events name every repository it fetched, the URL's user info
// and port left out: a real git clone through the lab's git server, traced
// as the install's steps are (GIT_TRACE2_EVENT naming a directory).
func TestGitsOwnRecordNamesTheRepositoriesFetched(t *testing.T) {
	if _, err := os.Stat(gitserver.DefaultBackend); err != nil {
		t.Skip("no git-http-backend")
	}
	root := t.TempDir()
	for _, repo := range []string{"good/cc-ci.git", "tools/site.git"} {
		out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(root, repo)).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	srv := httptest.NewServer(&gitserver.Server{Root: root, TokenFile: "token", Log: t.Logf})
	defer srv.Close()
	trace := t.TempDir()
	for _, repo := range []string{"good/cc-ci.git", "tools/site.git"} {
		cmd := exec.Command("git", "clone", "-q", strings.Replace(srv.URL, "http://", "http://ci@", 1)+"/"+repo, filepath.Join(t.TempDir(), "c"))
		cmd.Env = append(os.Environ(), "GIT_TRACE2_EVENT="+trace, "GIT_TERMINAL_PROMPT=0")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	var lines []string
	files, err := os.ReadDir(trace)
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(trace, f.Name()))
		require.NoError(t, err)
		lines = append(lines, strings.Split(string(b), "\n")...)
	}
	lines = append(lines, "not json", `{"event":"child_start","argv":["git-remote-https","origin","::"]}`)
	repos := map[string]bool{}
	for _, f := range fetchlog.FromGitTrace("clone-base", lines) {
		assert.Equal(t, "clone-base", f.Step)
		assert.Equal(t, "http", f.Protocol)
		assert.False(t, f.Time.IsZero())
		repos[f.Repo] = true // git clone starts the helper, which may start its own
	}
	assert.Equal(t, map[string]bool{"127.0.0.1/good/cc-ci": true, "127.0.0.1/tools/site": true}, repos)
}

func TestTheSSHTransportIsReadFromItsArgv(t *testing.T) {
	got := fetchlog.FromGitTrace("clone-secrets", []string{
		`{"event":"child_start","time":"2026-12-07T06:00:00.000000Z","child_class":"transport/ssh","argv":["ssh","-o","SendEnv=GIT_PROTOCOL","-p","2222","git@10.99.0.1","git-upload-pack '/good/cc-ci-secrets.git'"]}`,
		`{"event":"child_start","child_class":"transport/ssh","argv":["ssh","git@10.99.0.1","rm -rf /"]}`,
	})
	require.Len(t, got, 1)
	assert.Equal(t, "10.99.0.1/good/cc-ci-secrets", got[0].Repo)
	assert.Equal(t, "ssh", got[0].Protocol)
}

func TestOneRepositoryWhateverTheURL(t *testing.T) {
	for _, u := range []string{"https://git.example/o/r.git", "ssh://git@git.example:2222/o/r", "git@git.example:o/r.git", "http://bot@GIT.example:8418/o/r/"} {
		assert.Equal(t, "git.example/o/r", fetchlog.Identity(u), u)
	}
	assert.Equal(t, "", fetchlog.Identity("/srv/repos/r.git"))
}
