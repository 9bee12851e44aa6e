// Package probe reads facts from a machine over SSH, read-only. Each probe
// returns what it found; the tests hold the expectations.
package probe

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// Runner runs one command on the machine under test and returns what it
// printed; *remote.Client is the real one, a test answers from recordings.
// A non-zero exit is a *remote.CommandError.
type Runner interface {
	Run(ctx context.Context, command string, timeout time.Duration) (*remote.Result, error)
}

// Residue lists what a blank machine must not have: each path that exists,
// each systemd unit matching unitGlob, and each file under searchDirs that
// holds an age secret key. Empty means blank.
func Residue(ctx context.Context, m Runner, paths []string, unitGlob string, searchDirs []string) ([]string, error) {
	var found []string
	for _, p := range paths {
		res, err := m.Run(ctx, "test -e "+remote.ShellQuote(p)+" && echo present || true", bounds.Command)
		if err != nil {
			return nil, fmt.Errorf("probe path %s: %w", p, err)
		}
		if strings.TrimSpace(string(res.Stdout)) == "present" {
			found = append(found, "path "+p)
		}
	}
	// All unit files, matched here: systemctl exits 1 when a pattern matches nothing.
	res, err := m.Run(ctx, "systemctl list-unit-files --no-legend --plain --no-pager", bounds.Command)
	if err != nil {
		return nil, fmt.Errorf("probe units %s: %w", unitGlob, err)
	}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if ok, err := path.Match(unitGlob, f[0]); err != nil {
			return nil, fmt.Errorf("probe units: pattern %q: %w", unitGlob, err)
		} else if ok {
			found = append(found, "unit "+f[0])
		}
	}
	// The age key marker; grep prints file names only, never the matched line.
	quoted := make([]string, len(searchDirs))
	for i, d := range searchDirs {
		quoted[i] = remote.ShellQuote(d)
	}
	// grep exits 1 when nothing matches; above 1 is an error, reported as such.
	script := "dirs=(); for d in " + strings.Join(quoted, " ") + `; do [ -e "$d" ] && dirs+=("$d"); done
rc=0; grep -rlsI -e 'AGE-SECRET-KEY-[1]' "${dirs[@]}" || rc=$?
[ "$rc" -le 1 ]`
	res, err = m.Run(ctx, script, bounds.Scan)
	if err != nil {
		return nil, fmt.Errorf("probe age keys: %w", err)
	}
	for _, f := range strings.Fields(string(res.Stdout)) {
		found = append(found, "age secret key in "+f)
	}
	return found, nil
}
