// Package buildinfo says which harness made a run, for its evidence: a
// reviewer re-verifying from a cold start needs to know what code judged.
package buildinfo

import (
	"context"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/gitexec"
)

// Version is set at link time by `make dist` (-X …/buildinfo.Version=…).
var Version string

// Harness is the commit the harness was built from, with "-dirty" when its
// code had uncommitted changes (the evidence files REVIEW.* do not count),
// or "unknown" when neither the build nor a git checkout says.
func Harness() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "-dirty"
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	// go test stamps no VCS information: ask the checkout this file is in.
	_, here, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(here) {
		return "unknown"
	}
	return checkout(filepath.Join(filepath.Dir(here), "..", ".."))
}

// checkout is HEAD of the git checkout at root, "-dirty" when a tracked
// file other than REVIEW.* differs from it.
func checkout(root string) string {
	ctx, cancel := context.WithTimeout(context.Background(), bounds.Git)
	defer cancel()
	rev, err := gitexec.In(ctx, root, "the harness checkout", "rev-parse", "HEAD")
	if err != nil {
		return "unknown"
	}
	changed, err := gitexec.In(ctx, root, "the harness checkout", "status", "--porcelain", "--untracked-files=no",
		"--", ".", ":(exclude)REVIEW.*")
	if err != nil {
		return "unknown"
	}
	head := strings.TrimSpace(string(rev))
	if len(strings.TrimSpace(string(changed))) > 0 {
		return head + "-dirty"
	}
	return head
}
