package target

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/sopsfile"
)

// TreeProblem is a file in the secrets repo that is not an encrypted secret.
type TreeProblem struct {
	Commit string
	Path   string
	Why    string
}

func (p TreeProblem) String() string { return fmt.Sprintf("%s:%s: %s", p.Commit[:12], p.Path, p.Why) }

// allowedPlain are the only files of the secrets repo that are not sops files.
var allowedPlain = map[string]bool{".sops.yaml": true, "README": true, "README.md": true}

// SecretsTreeProblems checks every commit reachable from the secrets repo's
// default branch: each file must be .sops.yaml, a README, or a sops file whose
// every value is encrypted. Code or plaintext in any commit is a problem.
func SecretsTreeProblems(ctx context.Context, rp *Repos) ([]TreeProblem, error) {
	commits, err := gitOut(ctx, rp.Secrets, "rev-list", rp.SecretsCommit)
	if err != nil {
		return nil, err
	}
	var problems []TreeProblem
	checked := map[string]bool{} // blob id → already judged
	for _, c := range strings.Fields(commits) {
		ls, err := gitOut(ctx, rp.Secrets, "ls-tree", "-r", c)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(ls, "\n") {
			meta, path, ok := strings.Cut(line, "\t")
			if !ok {
				continue
			}
			f := strings.Fields(meta) // mode type id
			if len(f) != 3 {
				return nil, fmt.Errorf("secrets repo: unexpected ls-tree entry %q", line)
			}
			if f[0] == "120000" || f[0] == "160000" {
				problems = append(problems, TreeProblem{c, path, "a symlink or submodule: the secrets repo holds only encrypted files"})
				continue
			}
			if allowedPlain[path] {
				continue
			}
			if f[0] == "100755" {
				problems = append(problems, TreeProblem{c, path, "executable file: the secrets repo holds no code"})
				continue
			}
			if checked[f[2]] {
				continue
			}
			checked[f[2]] = true
			blob, err := readCommitted(ctx, rp.Secrets, c, path)
			if err != nil {
				problems = append(problems, TreeProblem{c, path, err.Error()})
				continue
			}
			info, err := sopsfile.InspectFile(path, blob)
			if err != nil {
				problems = append(problems, TreeProblem{c, path, "not a sops-encrypted file (" + err.Error() + ")"})
				continue
			}
			if plain := info.Plaintext(); len(plain) > 0 {
				problems = append(problems, TreeProblem{c, path, "values not encrypted: " + strings.Join(plain, ", ")})
			}
			if !info.HasMAC {
				problems = append(problems, TreeProblem{c, path, "no encrypted MAC"})
			}
		}
	}
	return problems, nil
}

// SopsRecipients reads the age recipients .sops.yaml names, sorted.
func SopsRecipients(rp *Repos) ([]string, error) {
	b, err := rp.readSecrets(context.Background(), ".sops.yaml")
	if err != nil {
		return nil, fmt.Errorf("secrets repo: %w", err)
	}
	return ageRecipients(string(b)), nil
}

var ageRecipient = regexp.MustCompile(`age1[02-9ac-hj-np-z]{58}`)

func ageRecipients(s string) []string {
	rs := ageRecipient.FindAllString(s, -1)
	sort.Strings(rs)
	return rs
}

// FileRecipients reads the recipients of a sops file in the secrets repo.
func FileRecipients(rp *Repos, path string) ([]string, error) {
	b, err := rp.readSecrets(context.Background(), path)
	if err != nil {
		return nil, err
	}
	info, err := sopsfile.InspectFile(path, b)
	if err != nil {
		return nil, err
	}
	return info.Recipients, nil
}

// ReadBase reads a file of the base repo as committed.
func ReadBase(rp *Repos, path string) (string, error) {
	b, err := rp.readBase(context.Background(), path)
	return string(b), err
}

// ReadDocs reads each of paths from the base as committed: path → text,
// a path the base does not hold (or not as a readable regular file) absent.
func ReadDocs(rp *Repos, paths []string) map[string]string {
	docs := map[string]string{}
	for _, p := range paths {
		if text, err := ReadBase(rp, p); err == nil {
			docs[p] = text
		}
	}
	return docs
}

// D8Doc is the target's D8 evidence document.
const D8Doc = "docs/d8-evidence.md"

// ReadSecretsFile reads the encrypted secrets file as committed.
func ReadSecretsFile(rp *Repos) ([]byte, error) {
	return rp.readSecrets(context.Background(), SecretsDoc)
}

// Refs lists every ref of a fetched repo (the base's or the secrets'), at
// most max of them: what the leak scan of its objects covered.
func Refs(ctx context.Context, gitDir string, max int) ([]string, error) {
	out, err := gitOut(ctx, gitDir, "for-each-ref", "--format=%(refname)", fmt.Sprintf("--count=%d", max+1))
	if err != nil {
		return nil, err
	}
	refs := strings.Fields(out)
	if len(refs) > max {
		refs = append(refs[:max], "…")
	}
	return refs, nil
}

// PlainIn names the committed files of the base (at its pinned commit) that
// hold value as plain text — not inside a sops-encrypted file, whose
// metadata lists recipients without making them parameters: where an
// instance parameter (the domain, a recipient) is set, whatever the file.
func PlainIn(rp *Repos, value string) ([]string, error) {
	if value == "" {
		return nil, nil
	}
	ctx := context.Background()
	out, err := gitBytes(ctx, rp.Base, "grep", "-l", "-z", "-I", "-F", "-e", value, rp.BaseCommit, "--")
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return nil, nil // git grep: nothing matched
	}
	if err != nil {
		return nil, err
	}
	var files []string
	for _, hit := range strings.Split(string(out), "\x00") {
		p, ok := strings.CutPrefix(hit, rp.BaseCommit+":")
		if !ok || p == "" {
			continue
		}
		b, err := rp.readBase(ctx, p)
		if err != nil {
			continue // a symlink or a file too large is not where a parameter is set
		}
		if _, err := sopsfile.InspectFile(p, b); err == nil {
			continue
		}
		files = append(files, p)
	}
	return files, nil
}

// Trees are the committed trees of both repos at their pinned commits, as
// tar streams of exactly what is committed (treeTar): what a machine
// evaluates the declarations from.
func (rp *Repos) Trees(ctx context.Context) (base, secrets []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, bounds.Git)
	defer cancel()
	if base, err = treeTar(ctx, rp.Base, rp.BaseCommit); err != nil {
		return nil, nil, err
	}
	secrets, err = treeTar(ctx, rp.Secrets, rp.SecretsCommit)
	return base, secrets, err
}
