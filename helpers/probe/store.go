package probe

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// StoreNames are the store paths in /nix/store as the machine holds them
// (entries that are not store paths, such as .links, are left out); none
// when there is no store.
func StoreNames(ctx context.Context, m Runner) (map[string]bool, error) {
	res, err := m.Run(ctx, "[ -d /nix/store ] && ls -1A /nix/store || true", bounds.Scan)
	if err != nil {
		return nil, fmt.Errorf("probe /nix/store: %w", err)
	}
	out := map[string]bool{}
	for _, name := range strings.Split(string(res.Stdout), "\n") {
		if p := "/nix/store/" + name; nixStorePath.MatchString(p) {
			out[p] = true
		}
	}
	return out, nil
}

// Closure is every store path the roots need (nix-store -qR), each checked
// to be a store path before it is believed.
func Closure(ctx context.Context, m Runner, roots ...string) ([]string, error) {
	if len(roots) == 0 {
		return nil, nil
	}
	quoted := make([]string, len(roots))
	for i, r := range roots {
		quoted[i] = remote.ShellQuote(r)
	}
	res, err := m.Run(ctx, "nix-store --query --requisites -- "+strings.Join(quoted, " "), bounds.Scan)
	if err != nil {
		return nil, fmt.Errorf("the closure of %v: %w", roots, err)
	}
	var out []string
	for _, p := range strings.Fields(string(res.Stdout)) {
		if !nixStorePath.MatchString(p) {
			return nil, fmt.Errorf("the closure of %v: nix-store printed %.80q, which is not a store path", roots, p)
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// AlreadyThere are the paths of closure that were in the store before
// (before), apart from what the machine's own system needed (baseline):
// what an install activated without building or fetching it.
func AlreadyThere(closure []string, before, baseline map[string]bool) []string {
	var out []string
	for _, p := range closure {
		if before[p] && !baseline[p] {
			out = append(out, path.Base(p))
		}
	}
	return out
}
