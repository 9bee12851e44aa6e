#!/usr/bin/env bash
# make soak: the acceptance suite on the good target N times back to back
# (TARGET=good-deploy-key: on that flavour, with its settings.env).
# Reports passes, min/median/max wall time, and harness instances left after
# each run (asked of the Incus API: labelled instances in the allowed project).
set -euo pipefail
N=${N:-5}
TARGET=${TARGET:-good}
cd "$(dirname "$0")/.."
export PATH=/usr/libexec/incus:$PATH CCCI_ACCEPTANCE=1 GOTOOLCHAIN=local
if [ "$TARGET" != good ]; then
  dir="${LAB_STATE:-/var/lib/cc-ci-lab}/targets/$TARGET"
  [ -f "$dir/target.json" ] || { echo "soak: no lab target $TARGET (make lab-up)" >&2; exit 2; }
  base=$(sed -n 's/^CCCI_BASE_REPO_URL=//p' "${LAB_STATE:-/var/lib/cc-ci-lab}/lab.env")
  export CCCI_BASE_REPO_URL="${base%/good/cc-ci.git}/$TARGET/cc-ci.git"
  export CCCI_SECRETS_REPO_URL="${base%/good/cc-ci.git}/$TARGET/cc-ci-secrets.git"
  if [ -f "$dir/settings.env" ]; then
    while IFS= read -r kv; do export "${kv?}"; done < <(grep -v '^#' "$dir/settings.env")
  fi
fi
# shellcheck source=lab/incus-cli.sh
. lab/incus-cli.sh
lab_pin_incus_cli "${INCUS_SOCKET:-/var/lib/incus/unix.socket}" "${LAB_STATE:-/var/lib/cc-ci-lab}/incus-cli"
out=out/soak-$TARGET; mkdir -p "$out"
go test -c -o "$out/acceptance.test" ./acceptance
pass=0; times=()
for i in $(seq "$N"); do
  start=$(date +%s.%N)
  if CCCI_REVIEW_FILE="$PWD/$out/REVIEW.md" "$out/acceptance.test" -test.count=1 -test.timeout 40m >"$out/run-$i.log" 2>&1; then
    pass=$((pass + 1)); result=PASS
  else
    result=FAIL
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  times+=("$secs")
  left=$(incus list --all-projects -f csv -c "n,config:user.ccci.created-by" | grep -c ',cc-ci-acceptance$' || true)
  printf 'soak run %d/%d: %s in %.1fs, %d harness instance(s) left\n' "$i" "$N" "$result" "$secs" "$left"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
printf 'soak: %d/%d passed; wall time min %.1fs, median %.1fs, max %.1fs\n' "$pass" "$N" \
  "$(echo "$sorted" | head -1)" "$(echo "$sorted" | sed -n "$(( (N + 1) / 2 ))p")" "$(echo "$sorted" | tail -1)"
[ "$pass" -eq "$N" ]
