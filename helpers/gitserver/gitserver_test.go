package gitserver

import (
	"time"

	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/fetchlog"
)

func run(t *testing.T, dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func bareRepo(t *testing.T, root, name string) {
	work := t.TempDir()
	_, err := run(t, work, "init", "-q")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(work, "README"), []byte("hi\n"), 0o644))
	_, err = run(t, work, "add", ".")
	require.NoError(t, err)
	_, err = run(t, work, "commit", "-qm", "c")
	require.NoError(t, err)
	_, err = run(t, root, "clone", "-q", "--bare", work, filepath.Join(root, name))
	require.NoError(t, err)
}

func TestPublicAndPrivateRepos(t *testing.T) {
	if _, err := os.Stat(DefaultBackend); err != nil {
		t.Skip("git-http-backend not installed")
	}
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "good"), 0o755))
	bareRepo(t, root, "good/cc-ci.git")
	bareRepo(t, root, "good/cc-ci-secrets.git")
	require.NoError(t, os.WriteFile(filepath.Join(root, "good/cc-ci-secrets.git/ccci-read-token"), []byte("tok-123456\n"), 0o600))
	logPath := filepath.Join(t.TempDir(), "fetches.jsonl")
	fetches, err := fetchlog.Open(logPath)
	require.NoError(t, err)
	srv := httptest.NewServer(&Server{Root: root, TokenFile: "ccci-read-token", Log: t.Logf, Fetches: fetches})
	defer srv.Close()
	dst := t.TempDir()
	start := time.Now()

	out, err := run(t, dst, "clone", "-q", URL(srv.URL, "good/cc-ci.git"), "base")
	require.NoError(t, err, out)

	out, err = run(t, dst, "clone", "-q", URL(srv.URL, "good/cc-ci-secrets.git"), "nope")
	require.Error(t, err, "a private repo without credentials must be refused")
	assert.Contains(t, out, "could not read Username")

	u, _ := url.Parse(URL(srv.URL, "good/cc-ci-secrets.git"))
	u.User = url.UserPassword("ci", "wrong-token")
	_, err = run(t, dst, "clone", "-q", u.String(), "wrong")
	require.Error(t, err)

	u.User = url.UserPassword("ci", "tok-123456")
	out, err = run(t, dst, "clone", "-q", u.String(), "secrets")
	require.NoError(t, err, out)

	// Read-only, and the token file is never served.
	out, err = run(t, filepath.Join(dst, "base"), "push", "-q", "origin", "HEAD:refs/heads/x")
	require.Error(t, err, out)
	req, _ := http.NewRequest("GET", URL(srv.URL, "good/cc-ci-secrets.git/ccci-read-token"), nil)
	req.SetBasicAuth("ci", "tok-123456")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.NotEqual(t, http.StatusOK, resp.StatusCode, "even with the token, the token file is not served")
	resp, err = http.Get(srv.URL + "/../etc/passwd.git/HEAD")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.False(t, strings.Contains(out, "tok-123456"))

	// Every request for a repository is recorded, by repository and client,
	// refused ones included.
	entries, err := fetchlog.Read(logPath, start)
	require.NoError(t, err)
	repos := map[string]bool{}
	for _, e := range entries {
		repos[e.Repo] = true
		assert.Equal(t, "127.0.0.1", e.Remote)
		assert.Equal(t, "http", e.Protocol)
	}
	assert.Equal(t, map[string]bool{"good/cc-ci.git": true, "good/cc-ci-secrets.git": true, "etc/passwd.git": true}, repos,
		"a repository that is not there is recorded as asked for")
}

// A private repo whose token file exists but cannot be read (a dangling
// link, a directory, an empty file) is served to nobody: the server fails
// closed, not open.
func TestAPrivateRepoWhoseTokenCannotBeReadIsRefused(t *testing.T) {
	if _, err := os.Stat(DefaultBackend); err != nil {
		t.Skip("git-http-backend not installed")
	}
	for name, plant := range map[string]func(string) error{
		"dangling link": func(p string) error { return os.Symlink(filepath.Join(filepath.Dir(p), "gone"), p) },
		"a directory":   func(p string) error { return os.Mkdir(p, 0o700) },
		"empty":         func(p string) error { return os.WriteFile(p, nil, 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			bareRepo(t, root, "s.git")
			require.NoError(t, plant(filepath.Join(root, "s.git", "ccci-read-token")))
			srv := httptest.NewServer(&Server{Root: root, TokenFile: "ccci-read-token", Log: t.Logf})
			defer srv.Close()
			for _, withAuth := range []bool{false, true} {
				req, _ := http.NewRequest("GET", URL(srv.URL, "s.git")+"/info/refs?service=git-upload-pack", nil)
				if withAuth {
					req.SetBasicAuth("ci", "") // an empty token must not match an empty password
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusInternalServerError, resp.StatusCode, "refused, with or without credentials")
			}
		})
	}
}
