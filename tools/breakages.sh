#!/usr/bin/env bash
# The breakages issue 20 names, each made on purpose in a copy of HEAD:
# every one must fail `make unit` (no lab). Prints one line per breakage and
# exits 1 if any survives. Usage: tools/breakages.sh (make breakages).
# The test that checks this script's lines still match the code is skipped:
# it fails on every breakage, and a breakage must be caught by what it breaks.
set -uo pipefail
src=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dir=$(mktemp -d /tmp/ccci-breakages.XXXXXX)
trap 'rm -rf "$dir"' EXIT
git clone -q "$src" "$dir/repo" && cd "$dir/repo" || exit 2
survived=0
breakage() { # name file old new: replace the literal text old by new in file
  local name=$1 file=$2
  git checkout -q -- .
  OLD=$3 NEW=$4 perl -0pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/ or die "not found\n"' "$file" ||
    { echo "$name: the code changed; update tools/breakages.sh"; survived=1; return; }
  if CCCI_CONFIG= CCCI_INCUS_URL= CCCI_INCUS_SOCKET=/nonexistent/incus.socket CCCI_ACCEPTANCE= \
      go test -skip TestEveryBreakageStillMatchesTheCode ./... >"$dir/$name.log" 2>&1; then
    echo "$name: SURVIVED make unit"; survived=1
  else
    echo "$name: caught by $(grep -oE '^--- FAIL: [A-Za-z0-9_]+' "$dir/$name.log" | cut -d' ' -f3 | sort -u | paste -sd' ')"
  fi
}
breakage one-extra-machine helpers/machine/machine.go 'if n >= m.Guard.MaxMachines {' 'if n > m.Guard.MaxMachines {'
breakage no-ram-recheck helpers/machine/machine.go 'if ram, err := RAM(ctx, m.Client, m.Guard, 0); err != nil || !ram.Fits {' 'if ram, err := (RAMReport{Fits: true}), error(nil); err != nil || !ram.Fits {'
breakage no-teardown-reserve helpers/testrun/run.go 'return r.Started.Add(timeout - r.Config.Timeouts.Reserve(timeout))' 'return r.Started.Add(timeout)'
breakage zero-teardown-reserve helpers/config/settings.go 'return min(t.TeardownReserve, max(timeout/3, bounds.Longest("CCCI_TEARDOWN_RESERVE")))' 'return 0'
breakage restart-unnoticed helpers/probe/units.go 'case u.MainPID != b.MainPID:' 'case false && u.MainPID != b.MainPID:'
breakage restart-count-unnoticed helpers/probe/units.go 'case u.NRestarts != b.NRestarts:' 'case false && u.NRestarts != b.NRestarts:'
breakage reaper-ignores-expiry helpers/machine/ownership.go 'return !now.Before(exp), nil' 'return !now.Before(exp) || true, nil'
breakage reaper-ignores-label helpers/machine/reaper.go 'if !l.Marked(&in) {' 'if false {'
breakage shell-stdin-not-dev-null helpers/remote/shell.go '} </dev/null\n' '}\n'
exit $survived
