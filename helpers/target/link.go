package target

// How the base pins the secrets repo: the plan (§2) allows a flake input or
// a git submodule. Read from what git and Nix wrote — flake.lock, the
// .gitmodules file and the gitlink in the base's tree — never from
// flake.nix's syntax, which may spell an input in many ways.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/fetchlog"
)

// SecretsLink is one way the base pins the secrets repo.
type SecretsLink struct {
	Kind    string // "flake input" or "git submodule"
	Name    string // the input's name, or the submodule's path
	Where   string // the file that pins it: flake.lock, or the base's tree
	URL     string
	Rev     string // the pinned commit
	NarHash string // a flake input's pinned content hash
}

func (l SecretsLink) String() string {
	return fmt.Sprintf("%s %q (%s) at %s", l.Kind, l.Name, l.URL, short(l.Rev))
}

// SecretsLinks finds every way the base pins the secrets repo at
// secretsURL: each direct input of the root flake in flake.lock whose URL
// names that repository (whatever the scheme and credentials) or that is
// called "secrets" (an input overridden to a local clone at install time
// locks a file: URL), and each git submodule whose URL names it.
func SecretsLinks(rp *Repos, secretsURL string) ([]SecretsLink, error) {
	ctx := context.Background()
	inputs, err := rootInputs(ctx, rp)
	if err != nil {
		return nil, err
	}
	var out []SecretsLink
	for _, in := range inputs {
		if in.Name == "secrets" || sameRepo(in.URL, secretsURL) {
			out = append(out, in)
		}
	}
	subs, err := submodules(ctx, rp)
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		if sameRepo(s.URL, secretsURL) {
			out = append(out, s)
		}
	}
	return out, nil
}

// flakeLock is what the harness reads of the base's flake.lock.
type flakeLock struct {
	Root  string `json:"root"`
	Nodes map[string]struct {
		Inputs map[string]json.RawMessage `json:"inputs"`
		Locked map[string]any             `json:"locked"`
	} `json:"nodes"`
}

// readLock reads the base's flake.lock (nil when it has none).
func readLock(ctx context.Context, rp *Repos) (*flakeLock, error) {
	b, err := rp.readBaseIfThere(ctx, "flake.lock")
	if b == nil || err != nil {
		return nil, err
	}
	var lock flakeLock
	if err := json.Unmarshal(b, &lock); err != nil {
		return nil, fmt.Errorf("base repo flake.lock: %w", err)
	}
	return &lock, nil
}

// lockedURL is where a node of the lock is fetched from: its url, or the
// forge's https address for a github/gitlab node.
func lockedURL(locked map[string]any) string {
	s := func(k string) string { v, _ := locked[k].(string); return v }
	if s("type") == "github" || s("type") == "gitlab" {
		return "https://" + s("type") + ".com/" + s("owner") + "/" + s("repo")
	}
	return s("url")
}

// LockedInputs are where every input the base's flake.lock pins, direct or
// not, is fetched from: what the switch may fetch besides the two repos,
// since the base names each by its content hash.
func LockedInputs(rp *Repos) ([]string, error) {
	lock, err := readLock(context.Background(), rp)
	if lock == nil || err != nil {
		return nil, err
	}
	var out []string
	for name, n := range lock.Nodes {
		if u := lockedURL(n.Locked); u != "" && name != lock.Root {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out, nil
}

// rootInputs are the root flake's direct inputs as flake.lock pins them
// (none when the base has no flake.lock).
func rootInputs(ctx context.Context, rp *Repos) ([]SecretsLink, error) {
	lock, err := readLock(ctx, rp)
	if lock == nil || err != nil {
		return nil, err
	}
	root, ok := lock.Nodes[lock.Root]
	if !ok {
		return nil, fmt.Errorf("base repo flake.lock: the root node %q is not among its nodes", lock.Root)
	}
	var out []SecretsLink
	for name, ref := range root.Inputs {
		var node string
		if json.Unmarshal(ref, &node) != nil {
			continue // a `follows` path: another input's node, judged there
		}
		n, ok := lock.Nodes[node]
		if !ok {
			return nil, fmt.Errorf("base repo flake.lock: input %q names node %q, which is not there", name, node)
		}
		s := func(k string) string { v, _ := n.Locked[k].(string); return v }
		out = append(out, SecretsLink{Kind: "flake input", Name: name, Where: "flake.lock", URL: lockedURL(n.Locked), Rev: s("rev"), NarHash: s("narHash")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// submodules are the base's git submodules: .gitmodules names each path
// and URL, the tree pins each commit (a gitlink).
func submodules(ctx context.Context, rp *Repos) ([]SecretsLink, error) {
	b, err := rp.readBaseIfThere(ctx, ".gitmodules")
	if b == nil || err != nil {
		return nil, err
	}
	var out []SecretsLink
	for _, m := range parseGitmodules(string(b)) {
		if m.Name == "" || strings.HasPrefix(m.Name, "/") || strings.Contains(m.Name, "..") {
			return nil, fmt.Errorf("base repo .gitmodules: submodule path %q is not a path inside the repo", m.Name)
		}
		ls, err := gitOut(ctx, rp.Base, "ls-tree", "-z", "--full-tree", rp.BaseCommit, "--", m.Name)
		if err != nil {
			return nil, err
		}
		meta, _, _ := strings.Cut(strings.TrimSuffix(ls, "\x00"), "\t")
		if f := strings.Fields(meta); len(f) == 3 && f[0] == "160000" && f[1] == "commit" {
			m.Rev = f[2]
		}
		out = append(out, m)
	}
	return out, nil
}

// parseGitmodules reads the path and url of each [submodule "…"] section
// (git-config syntax, as git writes .gitmodules).
func parseGitmodules(src string) []SecretsLink {
	var out []SecretsLink
	var cur *SecretsLink
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "[submodule"):
			out = append(out, SecretsLink{Kind: "git submodule", Where: "the base's tree (a gitlink)"})
			cur = &out[len(out)-1]
		case cur != nil && strings.Contains(line, "="):
			k, v, _ := strings.Cut(line, "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "path":
				cur.Name = v
			case "url":
				cur.URL = v
			}
		}
	}
	return out
}

// readBaseIfThere reads a file of the base as committed; nil, and no
// error, when the commit does not have it.
func (rp *Repos) readBaseIfThere(ctx context.Context, path string) ([]byte, error) {
	b, err := rp.readBase(ctx, path)
	var missing *CommittedFileError
	if errors.As(err, &missing) && missing.Missing {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("base repo: %w", err)
	}
	return b, nil
}

// sameRepo: two URLs name the same repository — the same host and path,
// whatever the scheme (https, ssh, git+https, scp-like), port, credentials
// and a trailing .git or slash (fetchlog.Identity).
func sameRepo(a, b string) bool {
	ka, kb := fetchlog.Identity(a), fetchlog.Identity(b)
	return ka != "" && ka == kb
}

// EvalSource is how an evaluation gets the pinned repos: their committed
// trees (from the git objects) and how the base pins the secrets repo —
// the first way SecretsLinks finds.
func EvalSource(ctx context.Context, rp *Repos, secretsURL string) (declared.Source, error) {
	links, err := SecretsLinks(rp, secretsURL)
	if err != nil {
		return declared.Source{}, err
	}
	if len(links) == 0 {
		return declared.Source{}, fmt.Errorf("the base does not pin the secrets repo %s (flake input or submodule)", secretsURL)
	}
	src := declared.Source{}
	switch l := links[0]; l.Kind {
	case "flake input":
		src.Input = l.Name
	default:
		src.Submodule = l.Name
	}
	src.Base, src.Secrets, err = rp.Trees(ctx)
	return src, err
}
