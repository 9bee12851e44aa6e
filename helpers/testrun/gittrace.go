package testrun

// git's own record of what it fetched during the install, on the machine
// (fetchlog.FromGitTrace): where no forge log reaches, C3 still tells a
// third repository from the two.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/fetchlog"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// gitTraced has each block the machine runs start with GIT_TRACE2_EVENT
// naming a directory of its own (fetchlog.TraceDir/<n>), so that every git
// process of the step — Nix's fetchers' included — writes its events
// there. It returns the step of each directory, filled as the steps run.
func gitTraced(sh *remote.Shell, timeout time.Duration, runner *installdoc.Runner) map[string]string {
	steps := map[string]string{}
	runner.BeforeStep = func(ctx context.Context, b installdoc.Block) error {
		dir := fmt.Sprintf("%02d", len(steps))
		steps[dir] = b.Step
		_, err := sh.Exec(ctx, "{ install -d -m 0700 "+fetchlog.TraceDir+"/"+dir+" || true; }; export GIT_TRACE2_EVENT="+fetchlog.TraceDir+"/"+dir, timeout)
		if err != nil {
			return fmt.Errorf("record git's fetches before step %q: %w", b.Step, err)
		}
		return nil
	}
	return steps
}

// maxTrace bounds what is read of git's events (the child_start lines only).
const maxTrace = 4 << 20

// gitFetches reads what git recorded in each step's directory. traced is
// false when git recorded nothing at all (it never ran, or cannot trace).
func (r *Run) gitFetches(cl *remote.Client, steps map[string]string) (fetches []fetchlog.GitFetch, traced bool) {
	res, err := cl.Run(r.ctx, `cd `+fetchlog.TraceDir+` 2>/dev/null || exit 0
for d in [0-9][0-9]; do
  [ -d "$d" ] || continue
  printf '=%s %s\n' "$d" "$(find "$d" -maxdepth 1 -type f | wc -l)"
  find "$d" -maxdepth 1 -type f -exec grep -h '"event":"child_start"' {} + 2>/dev/null | head -c `+strconv.Itoa(maxTrace)+` || true
  echo
done`, bounds.Scan)
	if err != nil {
		logf("git's record of the install's fetches cannot be read: %v", err)
		return nil, false
	}
	step, lines := "", []string(nil)
	flush := func() {
		fetches = append(fetches, fetchlog.FromGitTrace(step, lines)...)
		lines = nil
	}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if head, ok := strings.CutPrefix(line, "="); ok {
			flush()
			dir, n, _ := strings.Cut(head, " ")
			step = steps[dir]
			traced = traced || (n != "0" && step != "")
			continue
		}
		if step != "" {
			lines = append(lines, line)
		}
	}
	flush()
	return fetches, traced
}
