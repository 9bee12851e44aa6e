package target

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/gitexec"
)

// The target's repos are hostile input. They are cloned bare — there is no
// work tree, so nothing in them is ever followed, executed or written to —
// and every file is read from git's objects as committed: a regular file
// (never a symlink, a submodule or a tree), of bounded size.

// MaxFileSize bounds any one committed file the harness reads.
const MaxFileSize = 8 << 20

// CommittedFileError says why a committed path cannot be read as a file.
type CommittedFileError struct {
	Repo, Commit, Path, Why string
	Missing                 bool // the path is not in the commit at all
}

func (e *CommittedFileError) Error() string {
	return fmt.Sprintf("%s %s:%s: %s", e.Repo, short(e.Commit), e.Path, e.Why)
}

func short(commit string) string { return commit[:min(12, len(commit))] }

// readCommitted reads path as committed at commit in the bare repo gitDir.
func readCommitted(ctx context.Context, gitDir, commit, path string) ([]byte, error) {
	fail := func(why string) error {
		return &CommittedFileError{Repo: repoName(gitDir), Commit: commit, Path: path, Why: why}
	}
	if path == "" || strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		return nil, fail("not a path inside the repo")
	}
	ls, err := gitOut(ctx, gitDir, "ls-tree", "-z", "--full-tree", commit, "--", path)
	if err != nil {
		return nil, err
	}
	meta, name, ok := strings.Cut(strings.TrimSuffix(ls, "\x00"), "\t")
	if !ok || name != path {
		return nil, &CommittedFileError{Repo: repoName(gitDir), Commit: commit, Path: path, Why: "not committed: " + os.ErrNotExist.Error(), Missing: true}
	}
	f := strings.Fields(meta) // mode type id
	switch {
	case len(f) != 3:
		return nil, fail(fmt.Sprintf("unexpected ls-tree entry %q", meta))
	case f[0] == "120000":
		return nil, fail("a symlink: the harness reads only regular files as committed")
	case f[0] == "160000":
		return nil, fail("a submodule, not a file")
	case f[1] != "blob":
		return nil, fail("a " + f[1] + ", not a file")
	}
	size, err := gitOut(ctx, gitDir, "cat-file", "-s", f[2])
	if err != nil {
		return nil, err
	}
	if n, err := strconv.ParseInt(size, 10, 64); err != nil || n > MaxFileSize {
		return nil, fail(fmt.Sprintf("%s bytes: larger than the %d-byte bound", size, MaxFileSize))
	}
	return gitBytes(ctx, gitDir, "cat-file", "blob", f[2])
}

func repoName(gitDir string) string {
	base := gitDir[strings.LastIndex(gitDir, "/")+1:]
	return strings.TrimSuffix(base, ".git")
}

// gitOut runs git in a repo and returns its trimmed output.
func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	b, err := gitBytes(ctx, dir, args...)
	return strings.TrimSpace(string(b)), err
}

// gitBytes runs git in a repo and returns its output (bounded by gitexec).
func gitBytes(ctx context.Context, dir string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, bounds.Git)
	defer cancel()
	return gitexec.In(ctx, dir, repoName(dir), args...)
}

// Anonymous is how a repo's privacy is judged: its URL, where its forge
// serves anonymous readers (CCCI_SECRETS_ANONYMOUS_URL: "" = derived from
// URL, "none" = no such channel), and the pin of its SSH host key
// (CCCI_SECRETS_KNOWN_HOSTS).
type Anonymous struct{ URL, Web, KnownHosts string }

// AnonymousOf is how the settings say the secrets repo's privacy is judged.
func AnonymousOf(t config.Target) Anonymous {
	return Anonymous{URL: t.SecretsRepoURL, Web: t.SecretsAnonymousURL, KnownHosts: t.SecretsKnownHosts}
}

// AnonymousRead asks for the repo's refs as a stranger, on every channel its
// server serves strangers, and reports whether each refused, with what the
// server answered. Over HTTP(S) it is git's smart-HTTP discovery request
// with no credentials (what `git clone` sends first), so the answer is the
// server's own status.
//
// Over SSH a refusal proves nothing: a forge refuses every key it does not
// know at the door, public repo or not (Gitea's modules/ssh/ssh.go,
// publicKeyHandler: "Unknown public key" → false; Forgejo is Gitea's
// fork), and serves a public repo to anonymous readers over HTTPS. So the
// stranger — a key made for this one request, registered nowhere — is
// tried over SSH (a server that lets it read is public all the same), then
// the forge's HTTPS address of the repo (a.Web, or the https form of the
// SSH URL) decides. A server that cannot be reached is an error: privacy
// cannot be judged. Only a.Web = "none" — the operator's statement that
// the server has no anonymous channel — lets the SSH refusal stand alone.
func AnonymousRead(ctx context.Context, a Anonymous) (refused bool, answer string, err error) {
	ctx, cancel := context.WithTimeout(ctx, bounds.Git)
	defer cancel()
	if strings.HasPrefix(a.URL, "http://") || strings.HasPrefix(a.URL, "https://") {
		if a.Web == "" || a.Web == "none" || a.Web == a.URL {
			return anonymousHTTP(ctx, a.URL)
		}
		if refused, answer, err = anonymousHTTP(ctx, a.URL); err != nil || !refused {
			return refused, answer, err
		}
		return anonymousHTTP(ctx, a.Web)
	}
	refused, sshAnswer, err := anonymousSSH(ctx, a.URL, a.KnownHosts)
	if err != nil || !refused {
		return refused, sshAnswer, err
	}
	if a.Web == "none" {
		return true, "over SSH: " + sshAnswer + " (CCCI_SECRETS_ANONYMOUS_URL=none: no anonymous channel besides SSH)", nil
	}
	web := a.Web
	if web == "" {
		if web, err = httpsForm(a.URL); err != nil {
			return false, "", err
		}
	}
	refused, webAnswer, err := anonymousHTTP(ctx, web)
	if err != nil {
		return false, "", fmt.Errorf("%w: a forge refuses every SSH key it does not know, public repo or not, so privacy is judged where it serves anonymous readers; set CCCI_SECRETS_ANONYMOUS_URL to that address (or to none if the server has no anonymous channel)", err)
	}
	return refused, "over SSH: " + firstLine(sshAnswer) + "; at " + web + ": " + webAnswer, nil
}

// httpsForm is the forge's https address of a repo named by an SSH URL
// (ssh://[user@]host[:port]/path, or scp-like [user@]host:path).
func httpsForm(sshURL string) (string, error) {
	host, p := "", ""
	if rest, ok := strings.CutPrefix(sshURL, "ssh://"); ok {
		hostPort, path, _ := strings.Cut(rest, "/")
		_, hostPort, _ = cutLast(hostPort, "@")
		if h, _, err := net.SplitHostPort(hostPort); err == nil {
			hostPort = h
		}
		host, p = hostPort, path
	} else if hostPart, path, ok := strings.Cut(sshURL, ":"); ok && !strings.Contains(sshURL, "://") && !strings.Contains(hostPart, "/") {
		_, host, _ = cutLast(hostPart, "@")
		p = strings.TrimPrefix(path, "/")
	}
	if host == "" || p == "" {
		return "", fmt.Errorf("anonymous read of %s: no https form of it: set CCCI_SECRETS_ANONYMOUS_URL", sshURL)
	}
	return "https://" + host + "/" + p, nil
}

// cutLast cuts s around the last sep; without one, it is all after.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}

func firstLine(s string) string { first, _, _ := strings.Cut(strings.TrimSpace(s), "\n"); return first }

// anonymousSSH is `git ls-remote` with a stranger's key, no credential
// helper and no prompt; the host key pinned by knownHosts.
func anonymousSSH(ctx context.Context, url, knownHosts string) (refused bool, answer string, err error) {
	if knownHosts == "" {
		knownHosts = "/dev/null"
	}
	identity, done, err := strangerKey()
	if err != nil {
		return false, "", fmt.Errorf("anonymous read of %s: %w", url, err)
	}
	defer done()
	out, answer, runErr := gitexec.Run(ctx, []string{"GIT_ASKPASS=", "SSH_ASKPASS=", "GIT_SSH_COMMAND=" + sshCommand(identity, knownHosts)}, nil,
		"-c", "credential.helper=", "ls-remote", "--", url)
	if runErr == nil {
		return false, fmt.Sprintf("listed %d refs to an anonymous client", strings.Count(string(out), "\n")), nil
	}
	for _, denied := range []string{"Authentication failed", "could not read Username", "Permission denied", "Repository not found"} {
		if strings.Contains(answer, denied) {
			return true, answer, nil
		}
	}
	if strings.Contains(answer, "Host key verification failed") {
		return false, answer, fmt.Errorf("anonymous read of %s: the server's host key is not the one CCCI_SECRETS_KNOWN_HOSTS pins (%s)", url, knownHosts)
	}
	return false, answer, fmt.Errorf("anonymous read of %s: neither served nor refused: %w: %s", url, runErr, answer)
}

func anonymousHTTP(ctx context.Context, url string) (bool, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/info/refs?service=git-upload-pack", nil)
	if err != nil {
		return false, "", fmt.Errorf("anonymous read: %w", err)
	}
	// Anonymous means no credentials: net/http would send a URL's user
	// info as Basic auth (the settings refuse such a URL; this holds anyway).
	req.URL.User = nil
	req.Header.Set("Git-Protocol", "version=2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, "", fmt.Errorf("anonymous read of %s: the server cannot be reached: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	answer := "HTTP " + resp.Status
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound:
		return true, answer, nil
	case resp.StatusCode == http.StatusOK:
		return false, answer + ": the refs are served to an anonymous client", nil
	}
	return false, answer, fmt.Errorf("anonymous read of %s: neither served nor refused: %s", url, answer)
}

// commitID is a full SHA-1 or SHA-256 commit id, as evidence records one.
var commitID = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// OnlyChangedSince checks that the base repo's installed commit is the
// cited commit, or a descendant of it whose changes since touch only the
// files named (the D8 document, where the citation itself is committed):
// the run that cited commit judged the same target, so its proof holds for
// this one. Anything else — another history, or code changed since — is an
// error naming it.
func OnlyChangedSince(ctx context.Context, rp *Repos, cited string, allowed ...string) error {
	if !commitID.MatchString(cited) {
		return fmt.Errorf("the cited run records base commit %.80q, not a commit id", cited)
	}
	if cited == rp.BaseCommit {
		return nil
	}
	if _, err := gitOut(ctx, rp.Base, "merge-base", "--is-ancestor", cited, rp.BaseCommit); err != nil {
		return fmt.Errorf("the cited run judged base commit %.12s, which is not in the history of the base repo's %.12s (another repository, or rewritten history)",
			cited, rp.BaseCommit)
	}
	out, err := gitOut(ctx, rp.Base, "diff", "--no-renames", "--name-only", cited, rp.BaseCommit)
	if err != nil {
		return fmt.Errorf("diff %.12s..%.12s: %w", cited, rp.BaseCommit, err)
	}
	var changed []string
	for _, f := range strings.Split(out, "\n") {
		if f != "" && !slices.Contains(allowed, f) {
			changed = append(changed, f)
		}
	}
	if len(changed) > 0 {
		if len(changed) > 5 {
			changed = append(changed[:5], fmt.Sprintf("… %d more", len(changed)-5))
		}
		return fmt.Errorf("the cited run judged base commit %.12s; since then %s changed, not only %s: its proof is not of this target",
			cited, strings.Join(changed, ", "), strings.Join(allowed, ", "))
	}
	return nil
}

// strangerKey writes a fresh ed25519 key, registered nowhere (keyFileIn).
func strangerKey() (string, func(), error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "cc-ci acceptance: a stranger")
	if err != nil {
		return "", nil, err
	}
	return keyFileIn("", pem.EncodeToMemory(blk))
}
