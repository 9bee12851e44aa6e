// Package undeclared finds secret-shaped material that sops does not hold:
// a token left as a literal in a module, a private key committed beside the
// code, credentials in a URL — secrets nobody declared, which the leak
// scanner cannot search for because it searches only for the secrets it
// decrypted. The rules are gitleaks' (its detect package and default rule
// set: provider token formats, private-key blocks, high-entropy values next
// to secret-like names, credentials in URLs), kept by its maintainers rather
// than written here. A finding carries a fingerprint of the material, never
// the material.
package undeclared

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/sources"

	"github.com/cc-ci/acceptance/helpers/gitexec"
)

// Finding is one piece of secret-shaped material.
type Finding struct {
	Repo        string // the repository's name in the message (base, secrets), or "store"
	Object      string // the git object
	Path        string // a path it appears at in some commit ("" if none: unreachable)
	Line        int    // 1-based
	Rule        string // the gitleaks rule that matched
	Fingerprint string // sha256 of the material, hex
}

func (f Finding) String() string {
	if f.Object == "" { // a file of the machine's store, not a git object
		return fmt.Sprintf("%s line %d: rule %s, material sha256:%s", f.Path, f.Line, f.Rule, f.Fingerprint[:16])
	}
	where := "object " + shortID(f.Object)
	if f.Path != "" {
		where = f.Path + " (" + where + ")"
	}
	return fmt.Sprintf("%s repo %s line %d: rule %s, material sha256:%s", f.Repo, where, f.Line, f.Rule, f.Fingerprint[:16])
}

func shortID(id string) string { return id[:min(len(id), 12)] }

// Fingerprint is how material is named: sha256 of its bytes, hex.
func Fingerprint(material string) string {
	sum := sha256.Sum256([]byte(material))
	return hex.EncodeToString(sum[:])
}

// MaxBlob bounds what is searched of one object (the rest is not).
const MaxBlob = 4 << 20

var (
	once     sync.Once
	detector *detect.Detector
	initErr  error
)

// rules is gitleaks' detector with its default configuration, made once.
func rules() (*detect.Detector, error) {
	once.Do(func() { detector, initErr = detect.NewDetectorDefaultConfig() })
	return detector, initErr
}

// Rules are the rules gitleaks' default configuration reports on text,
// as if it were the file at path.
func Rules(path, text string) ([]string, error) {
	d, err := rules()
	if err != nil {
		return nil, fmt.Errorf("undeclared: gitleaks rules: %w", err)
	}
	var ids []string
	for _, m := range d.Detect(detect.Fragment(sources.Fragment{Raw: text, FilePath: path})) {
		ids = append(ids, m.RuleID)
	}
	return ids, nil
}

// Git searches every blob in the repository's object database (all history,
// every ref, unreachable objects too) and returns what it finds, except
// material whose fingerprint is in skip (a declared secret, which the leak
// scanner judges; material declared public).
func Git(ctx context.Context, name, repo string, skip map[string]bool) ([]Finding, error) {
	d, err := rules()
	if err != nil {
		return nil, fmt.Errorf("undeclared: gitleaks rules: %w", err)
	}
	paths, err := gitexec.ObjectPaths(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("undeclared: %w", err)
	}
	cmd, stdout, err := gitexec.Stream(ctx, repo, nil, "cat-file", "--batch-all-objects", "--batch", "--unordered")
	if err != nil {
		return nil, fmt.Errorf("undeclared: %w", err)
	}
	br := bufio.NewReaderSize(stdout, 1<<20)
	var out []Finding
	for {
		header, err := br.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		f := strings.Fields(header) // <id> <type> <size>
		if len(f) != 3 {
			return nil, fmt.Errorf("undeclared: git cat-file in %s: unexpected header %q", repo, header)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("undeclared: git cat-file in %s: unexpected header %q", repo, header)
		}
		body := make([]byte, min(size, MaxBlob))
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, err
		}
		if _, err := br.Discard(int(size-int64(len(body))) + 1); err != nil { // the rest, and the newline after it
			return nil, err
		}
		if f[1] != "blob" {
			continue
		}
		for _, m := range d.Detect(detect.Fragment(sources.Fragment{Raw: string(body), FilePath: paths[f[0]]})) {
			fp := Fingerprint(m.Secret)
			if skip[fp] {
				continue
			}
			out = append(out, Finding{Repo: name, Object: f[0], Path: paths[f[0]], Line: m.StartLine + 1, Rule: m.RuleID, Fingerprint: fp})
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("undeclared: git cat-file in %s: %w", repo, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// InRepos searches both repos of a target (git directories), setting aside
// the declared secrets (their plaintext is the leak scanner's to judge) and
// the material declared public (fingerprints, CCCI_PUBLIC_MATERIAL).
func InRepos(ctx context.Context, base, secrets string, declared map[string]string, public []string) ([]Finding, error) {
	skip := skipOf(declared, public)
	var out []Finding
	for _, r := range []struct{ name, dir string }{{"base", base}, {"secrets", secrets}} {
		found, err := Git(ctx, r.name, r.dir, skip)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	return out, nil
}

// skipOf are the fingerprints set aside: the declared secrets' (their
// plaintext is the leak scanner's to judge) and the material declared
// public.
func skipOf(declared map[string]string, public []string) map[string]bool {
	skip := map[string]bool{}
	for _, v := range declared {
		skip[Fingerprint(v)] = true
		skip[Fingerprint(strings.TrimSpace(v))] = true
	}
	for _, fp := range public {
		skip[strings.ToLower(fp)] = true
	}
	return skip
}
