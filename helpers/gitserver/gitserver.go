// Package gitserver serves bare git repos over git's smart HTTP protocol:
// the real `git http-backend` behind net/http/cgi. It is read-only. A repo
// holding a token file (fixtures.TokenFile) requires HTTP Basic auth with
// that token as the password, like a private repo on a forge.
package gitserver

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/fetchlog"
)

// DefaultBackend is where Debian's git ships git-http-backend.
const DefaultBackend = "/usr/lib/git-core/git-http-backend"

// Server is an http.Handler.
type Server struct {
	Root      string // directory of bare repos (any depth): /variant/cc-ci.git
	TokenFile string // name of the token file inside a private bare repo
	Backend   string
	Log       Logf
	// Fetches, if set, records every request for a repository (who, when,
	// which): C3 judges by it that the machine fetched only the two repos.
	Fetches *fetchlog.Writer
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := path.Clean("/" + r.URL.Path)
	repo, ok := repoOf(p)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if err := s.Fetches.Record(fetchlog.Entry{Time: time.Now().UTC(), Remote: fetchlog.RemoteOf(r.RemoteAddr), Protocol: "http", Repo: repo}); err != nil {
		// Fail closed: a fetch that cannot be recorded is not served.
		s.Log.printf("%s %s: 500 (fetch log: %v)", r.Method, p, err)
		http.Error(w, "this request cannot be recorded", http.StatusInternalServerError)
		return
	}
	if strings.Contains(p, "git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack" {
		s.Log.printf("refused push to %s", repo)
		http.Error(w, "read-only server", http.StatusForbidden)
		return
	}
	dir := filepath.Join(s.Root, filepath.FromSlash(repo))
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		http.NotFound(w, r)
		return
	}
	if private, want, err := s.token(dir); err != nil {
		// Fail closed: a private repo whose token cannot be read is
		// served to nobody, not to everybody.
		s.Log.printf("%s %s: 500 (%v)", r.Method, p, err)
		http.Error(w, "this repository's access cannot be checked", http.StatusInternalServerError)
		return
	} else if private {
		_, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
			s.Log.printf("%s %s: 401 (private repo, %s)", r.Method, p, map[bool]string{true: "wrong token", false: "no credentials"}[ok])
			w.Header().Set("WWW-Authenticate", `Basic realm="cc-ci private"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
	}
	backend := s.Backend
	if backend == "" {
		backend = DefaultBackend
	}
	h := &cgi.Handler{Path: backend, Root: "/", Env: []string{
		"GIT_PROJECT_ROOT=" + s.Root, "GIT_HTTP_EXPORT_ALL=1",
	}}
	s.Log.printf("%s %s", r.Method, p)
	h.ServeHTTP(w, r)
}

// token says whether the repo in dir is private (it holds the token file)
// and its token. A token file that cannot be read, is not a regular file or
// is empty is an error: the caller refuses the request.
func (s *Server) token(dir string) (private bool, token string, err error) {
	f := filepath.Join(dir, s.TokenFile)
	st, err := os.Lstat(f)
	if errors.Is(err, os.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return true, "", err
	}
	if !st.Mode().IsRegular() {
		return true, "", fmt.Errorf("token file %s is not a regular file", f)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return true, "", err
	}
	if token = strings.TrimSpace(string(b)); token == "" {
		return true, "", fmt.Errorf("token file %s is empty", f)
	}
	return true, token, nil
}

// repoOf returns the repo part of a URL path ("/good/cc-ci.git/info/refs" →
// "good/cc-ci.git"): everything up to the first element ending in ".git".
func repoOf(p string) (string, bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, el := range parts {
		if strings.HasSuffix(el, ".git") && el != ".git" {
			return strings.Join(parts[:i+1], "/"), true
		}
		if el == ".." || el == "" {
			return "", false
		}
	}
	return "", false
}

// Logf logs a line, as log.Printf and testing.T.Logf do; nil logs nothing.
type Logf func(format string, args ...any)

func (l Logf) printf(format string, args ...any) {
	if l != nil {
		l(format, args...)
	}
}

// URL joins a base URL and a repo path.
func URL(base, repo string) string { return fmt.Sprintf("%s/%s", strings.TrimRight(base, "/"), repo) }
