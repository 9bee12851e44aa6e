package fetchlog

// git's own record of what it fetched, on the machine: where no forge log
// reaches (the real host), the install's steps run with GIT_TRACE2_EVENT
// naming a directory of the step, and every git process writes its events
// there (Documentation/technical/api-trace2: a "child_start" event carries
// the argv of each child git starts — the remote helper with the URL for
// HTTP(S), ssh with the host and the repository's path for SSH). Nix's
// fetchers that shell out to git (a git flake input) are git processes too.
// Not recorded: fetches that are not git's (curl, a tarball input,
// libgit2), and a step that clears its environment; the traffic observer
// sees those where it runs.

import (
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"time"
)

// TraceDir is where a run's machine records git's events, a directory per step.
const TraceDir = "/run/ccci-git-trace"

// GitFetch is one repository git fetched during an install step.
type GitFetch struct {
	Step     string
	Time     time.Time
	Protocol string // http, https, ssh
	Repo     string // Identity of the URL: host/path, no scheme, user, port or .git
}

// event is what FromGitTrace reads of a trace2 event.
type event struct {
	Event      string    `json:"event"`
	Time       time.Time `json:"time"`
	ChildClass string    `json:"child_class"`
	Argv       []string  `json:"argv"`
}

// FromGitTrace reads trace2 events (one JSON object per line) that git
// wrote during step, and returns the repositories fetched. A line that is
// not an event is skipped, never printed: a process's argv may carry a
// credential.
func FromGitTrace(step string, lines []string) []GitFetch {
	var out []GitFetch
	for _, line := range lines {
		var e event
		if json.Unmarshal([]byte(line), &e) != nil || e.Event != "child_start" || len(e.Argv) == 0 {
			continue
		}
		if f, ok := fetchOf(e); ok {
			f.Step, f.Time = step, e.Time
			out = append(out, f)
		}
	}
	return out
}

// fetchOf reads a child git started: a remote helper (git remote-https
// <remote> <url>, or git-remote-https …) or the ssh transport (ssh [options]
// [user@]host "git-upload-pack '<path>'").
func fetchOf(e event) (GitFetch, bool) {
	argv := e.Argv
	if argv[0] == "git" && len(argv) > 1 {
		argv = argv[1:]
	}
	helper := strings.TrimPrefix(argv[0], "git-")
	if (helper == "remote-https" || helper == "remote-http") && len(argv) >= 3 {
		u, err := url.Parse(argv[len(argv)-1])
		if err != nil || u.Host == "" {
			return GitFetch{}, false
		}
		return GitFetch{Protocol: u.Scheme, Repo: identity(u.Hostname(), u.Path)}, true
	}
	if e.ChildClass == "transport/ssh" && len(argv) >= 3 {
		cmd := argv[len(argv)-1]
		verb, p, ok := strings.Cut(cmd, " ")
		if !ok || (verb != "git-upload-pack" && verb != "git-receive-pack") {
			return GitFetch{}, false
		}
		host := argv[len(argv)-2]
		if i := strings.LastIndex(host, "@"); i >= 0 {
			host = host[i+1:]
		}
		return GitFetch{Protocol: "ssh", Repo: identity(host, strings.Trim(p, "'\""))}, true
	}
	return GitFetch{}, false
}

// Identity is what names a repository whatever the URL that reached it:
// the host (lower case, no user, no port) and the path (no leading or
// trailing slash, no .git) — https://git.example/o/r.git and
// ssh://git@git.example:2222/o/r are one repository, as a forge serves it
// over both. "" for a URL that names no remote repository.
func Identity(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return identity(u.Hostname(), u.Path)
	}
	// scp-like: [user@]host:path
	if hostPart, p, ok := strings.Cut(rawURL, ":"); ok && !strings.Contains(rawURL, "://") && !strings.Contains(hostPart, "/") {
		if i := strings.LastIndex(hostPart, "@"); i >= 0 {
			hostPart = hostPart[i+1:]
		}
		return identity(hostPart, p)
	}
	return ""
}

func identity(host, p string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	return strings.ToLower(strings.Trim(host, "[]")) + "/" + p
}
