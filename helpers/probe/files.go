package probe

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// FileInfo is a file's digest and mode on the machine; the content never
// leaves it.
type FileInfo struct {
	Path   string
	SHA256 string // "" when the file does not exist
	Mode   string // octal, e.g. 400
	Owner  string // user name, e.g. root
	Group  string // group name, e.g. root
	UID    string // numeric, e.g. 0
	GID    string
	// RealPath is the file the path resolves to (readlink -f): a
	// sops-nix secret's /run/secrets/<name> is a link into
	// /run/secrets.d/<generation>/.
	RealPath string
}

// Private says whether only its owner, root, can read the file.
func (f FileInfo) Private() bool {
	m, err := strconv.ParseUint(f.Mode, 8, 32)
	return err == nil && f.Owner == "root" && m&0o077 == 0
}

// Files reads the SHA-256 and mode of each path.
func Files(ctx context.Context, m Runner, paths []string) ([]FileInfo, error) {
	out := make([]FileInfo, 0, len(paths))
	for _, p := range paths {
		q := remote.ShellQuote(p)
		// -f follows no symlink question away: stat -L reports what a reader gets.
		res, err := m.Run(ctx, "if [ -f "+q+" ]; then sha256sum "+q+" | cut -d' ' -f1; stat -L -c '%a %U %G %u %g' "+q+"; readlink -f "+q+"; fi", bounds.Command)
		if err != nil {
			return nil, fmt.Errorf("probe file %s: %w", p, err)
		}
		f := strings.Fields(string(res.Stdout))
		fi := FileInfo{Path: p}
		if len(f) == 7 && strings.HasPrefix(f[6], "/") {
			fi.SHA256, fi.Mode, fi.Owner, fi.Group, fi.UID, fi.GID, fi.RealPath = f[0], f[1], f[2], f[3], f[4], f[5], f[6]
		}
		out = append(out, fi)
	}
	return out, nil
}

// CurrentSystem is the store path /run/current-system points at ("" if none).
func CurrentSystem(ctx context.Context, m Runner) (string, error) {
	res, err := m.Run(ctx, "readlink -f /run/current-system || true", bounds.Command)
	if err != nil {
		return "", fmt.Errorf("probe /run/current-system: %w", err)
	}
	p := strings.TrimSpace(string(res.Stdout))
	if p == "/run/current-system" {
		return "", nil
	}
	return storePath(p)
}

// nixStorePath is what a store path looks like: the hash part in Nix's
// base32 alphabet, then a name of Nix's allowed characters.
var nixStorePath = regexp.MustCompile(`^/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]{1,211}$`)

// IsStorePath says whether p is a store path (not a file inside one).
func IsStorePath(p string) bool { return nixStorePath.MatchString(p) }

// storePath validates what the machine printed before it reaches a
// comparison, a log or the evidence.
func storePath(p string) (string, error) {
	if !nixStorePath.MatchString(p) {
		return "", fmt.Errorf("/run/current-system points at %.80q, which is not a Nix store path", p)
	}
	return p, nil
}

// CurrentSystemVia reads /run/current-system of an instance the harness has no
// SSH access to (the reference system), read-only, through Incus exec.
func CurrentSystemVia(ctx context.Context, c *incus.Client, project, name string) (string, error) {
	res, err := c.Exec(ctx, project, name, []string{"readlink", "-f", "/run/current-system"}, nil)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("readlink on %s/%s exited %d: %s", project, name, res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	p := strings.TrimSpace(string(res.Stdout))
	if p == "/run/current-system" {
		return "", fmt.Errorf("%s/%s has no /run/current-system", project, name)
	}
	return storePath(p)
}

// CurrentSystemByFile reads /run/current-system of an instance through the
// Incus file API — a GET, nothing runs in the guest (ccci doctor changes
// nothing) — and validates it as a store path.
func CurrentSystemByFile(ctx context.Context, c *incus.Client, project, name string) (string, error) {
	p, err := c.ReadLink(ctx, project, name, "/run/current-system")
	if err != nil {
		return "", err
	}
	return storePath(p)
}

// Tree lists what is under dir, relative to it: each regular file, and
// each symlink with "@" after its name. dir itself may be a symlink
// (sops-nix's /run/secrets → /run/secrets.d/<generation>); no link below it
// is followed. Nothing when dir is missing.
func Tree(ctx context.Context, m Runner, dir string) ([]string, error) {
	q := remote.ShellQuote(strings.TrimSuffix(dir, "/") + "/")
	res, err := m.Run(ctx, "if [ -d "+q+" ]; then find "+q+` -mindepth 1 \( -type f -printf '%P\0' \) -o \( -type l -printf '%P@\0' \); fi`, bounds.Command)
	if err != nil {
		return nil, fmt.Errorf("probe tree %s: %w", dir, err)
	}
	var out []string
	for _, name := range strings.Split(string(res.Stdout), "\x00") {
		if name != "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}
