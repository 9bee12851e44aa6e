#!/usr/bin/env bash
# The embedded lab: a real Incus daemon on this machine, reachable over its
# unix socket and over HTTPS with a trusted client certificate, a btrfs pool,
# a managed bridge, the project terraform-ci and a locally built blank image.
#
#   lab/lab.sh up      idempotent bring-up (installs packages on first run)
#   lab/lab.sh down    stops only what `up` started, deletes harness-labelled instances
#   lab/lab.sh sweep   deletes what dead runs left (instances, egress tables); `up` does it too
#   lab/lab.sh status  prints what is running
#   lab/lab.sh env     prints the CCCI_* settings that point the harness at the lab
#
# State lives in $LAB_STATE (default /var/lib/cc-ci-lab); the image tarball is
# cached in $LAB_CACHE by a hash of its recipe, so a second `up` does not rebuild it.
#
# The lab changes only an Incus it initialised itself: before any change, `up`
# claims the Incus (ccci-fixtures lab-claim): an empty one is marked as the
# lab's (server config user.ccci-lab.owner), a marked one is accepted, and
# any other — a real host's — is refused before anything is changed.
set -euo pipefail
# No incus command may read the caller's stdin (a pipe from a CI runner was
# once taken for a storage pool's YAML).
exec </dev/null

LAB_STATE=${LAB_STATE:-/var/lib/cc-ci-lab}
LAB_CACHE=${LAB_CACHE:-/var/cache/cc-ci-lab}
LAB_PROJECT=${LAB_PROJECT:-terraform-ci}
LAB_DECOY_PROJECT=${LAB_DECOY_PROJECT:-lichen}
LAB_IMAGE_ALIAS=${LAB_IMAGE_ALIAS:-ccci-blank}
LAB_HTTPS=${LAB_HTTPS:-127.0.0.1:8443}
LAB_BRIDGE_CIDR=${LAB_BRIDGE_CIDR:-10.99.0.1/24}
LAB_POOL_SIZE=${LAB_POOL_SIZE:-40GiB}
LAB_LABEL_PREFIX=${LAB_LABEL_PREFIX:-ccci}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

export PATH=/usr/libexec/incus:$PATH
# The Incus this script talks to, and only that one: the claim examines it
# and every incus command goes to it (lab/incus-cli.sh).
LAB_SOCKET=${INCUS_SOCKET:-/var/lib/incus/unix.socket}
# shellcheck source=lab/incus-cli.sh
. "$(dirname "${BASH_SOURCE[0]}")/incus-cli.sh"
lab_pin_incus_cli "$LAB_SOCKET" "$LAB_STATE/incus-cli"
LAB_BIN=${LAB_BIN:-$LAB_STATE/bin}
LAB_GIT_LISTEN=${LAB_GIT_LISTEN:-${LAB_BRIDGE_CIDR%/*}:8418}
LAB_GIT_SSH_LISTEN=${LAB_GIT_SSH_LISTEN:-${LAB_BRIDGE_CIDR%/*}:2222}
LAB_DOMAIN=${LAB_DOMAIN:-ci.lab.test}
LAB_NOT_BLANK_IMAGE=ccci-not-blank
LAB_PREBUILT_IMAGE=ccci-prebuilt
LAB_OVERSIZED_REFERENCE=cc-nix-oversized
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START=$(date +%s)
step() { printf '[lab %4ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

pid1_is_systemd() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The steps of `up`, in the order it takes them (one file per concern).
LAB_DIR=$(dirname "${BASH_SOURCE[0]}")
for f in host image targets; do
  # shellcheck source=/dev/null
  . "$LAB_DIR/steps/$f.sh"
done

up() {
  [ "$(id -u)" = 0 ] || die "lab up needs root"
  start_fixtures_build
  install_packages
  start_daemons
  claim_incus
  init_incus
  trust_client
  # From here the sops CLI and the image build in the background (they touch
  # no Incus) while the steps that need neither run. Not before the Incus
  # took the lab's first changes: an up that stops there builds nothing.
  start_image_build
  target_and_gitserver
  signing_key
  write_env
  build_seed_suite
  wait_image_build
  import_image "$TARBALL"
  ensure_project "$LAB_PROJECT"
  ensure_project "$LAB_DECOY_PROJECT"
  sweep_dead_runs
  seed_d8
  long_lived
  gateway
  host_defects
  step "lab is up"
}

# is_lab_incus: change nothing on an Incus that is not the lab's.
is_lab_incus() {
  incus_answers || return 1
  fixtures_bin
  "$LAB_BIN/ccci-fixtures" lab-claim -check -socket "$LAB_SOCKET"
}

# delete_labelled [orphans]: the harness's instances (created-by = the
# harness's value) in the lab's projects; with "orphans", only those of runs
# proven dead (run_dead): none a run kept on purpose (the kept label,
# SKIP_teardown), none whose run may be alive.
delete_labelled() {
  local p only=${1:-}
  for p in "$LAB_PROJECT" "$LAB_DECOY_PROJECT"; do
    { incus list --project "$p" -f csv -c "n,config:user.${LAB_LABEL_PREFIX}.created-by,config:user.${LAB_LABEL_PREFIX}.kept,config:user.${LAB_LABEL_PREFIX}.run-id"         2>/dev/null || true; } |
      while IFS=, read -r name creator kept run; do
        [ "$creator" = cc-ci-acceptance ] || continue
        if [ "$only" = orphans ]; then
          [ "$kept" = true ] && { step "kept harness instance $p/$name left for SKIP_provision"; continue; }
          run_dead "$run" || { step "harness instance $p/$name: run ${run:-?} not proven dead (its lease is held, or there is none): left to it and to the reaper's TTL"; continue; }
        fi
        incus delete -f "$name" --project "$p" && step "deleted harness instance $p/$name"
      done
  done
}

# A run's guardian holds an exclusive lock on $LAB_LEASES/<run-id>.lease for
# as long as it lives and removes the file when it is done
# (helpers/testrun/guardian.go, holdLease): a lease file nobody holds is a
# run that died with its guardian. A lock is seen across PID namespaces; a
# run with no lease file (another machine's, or one too new to have it) is
# not proven dead, and is left alone.
LAB_LEASES=${CCCI_LEASE_DIR:-/run/ccci-leases}
run_dead() {
  local id=$1 f="$LAB_LEASES/$1.lease"
  [[ $id =~ ^[a-z0-9][a-z0-9-]*$ ]] || return 1
  [ -f "$f" ] && [ ! -L "$f" ] || return 1
  command -v flock >/dev/null || die "flock (util-linux) is missing: cannot tell whether a run is dead"
  flock -n "$f" true
}

# What runs killed with their guardian left (a SIGKILLed process group, a
# machine stopped mid-run): their instances would count against the RAM cap
# until their expires-at (the reaper's TTL, 2h), refusing every run before.
sweep_dead_runs() {
  delete_labelled orphans
  sweep_egress_tables orphans
  local f id
  for f in "$LAB_LEASES"/*.lease; do # leases of dead runs, their leftovers gone
    [ -f "$f" ] || continue
    id=$(basename "$f" .lease)
    run_dead "$id" && rm -f "$f"
  done
}

stop_pid() {
  local f=$1
  if alive "$f"; then kill "$(cat "$f")"; for _ in $(seq 50); do alive "$f" || break; sleep 0.2; done; fi
  rm -f "$f"
}

# Containers outlive incusd: stop the ones lab-up started (they carry a lab role), in the lab's projects.
stop_long_lived() {
  local p
  for p in "$LAB_PROJECT" "$LAB_DECOY_PROJECT"; do
    incus list --project "$p" -f csv -c "n,s,config:user.ccci-lab.role" 2>/dev/null |
      while IFS=, read -r name state role; do
        [ -n "$role" ] && [ "$state" = RUNNING ] || continue
        incus stop -f "$name" --project "$p" && step "stopped $p/$name ($role)"
      done
  done
}

# Egress tables a killed run left behind (only the harness's own:
# ccci_egress_<run id, - as _>); with "orphans", only a dead run's.
sweep_egress_tables() {
  local only=${1:-}
  command -v nft >/dev/null || return 0
  nft list tables 2>/dev/null | awk '$1 == "table" && ($2 == "netdev" || $2 == "inet") && $3 ~ /^ccci_egress_/ {print $2, $3}' |
    while read -r f t; do
      if [ "$only" = orphans ]; then
        local id=${t#ccci_egress_}
        run_dead "${id//_/-}" || continue
      fi
      nft delete table "$f" "$t" && step "deleted leftover egress table $f $t"
    done
}

down() {
  if is_lab_incus; then
    # After the deletions: a table of a run still alive is not a leftover.
    delete_labelled; stop_long_lived; sweep_egress_tables
    if nft delete table ip ccci_lab_gateway 2>/dev/null; then step "removed the gateway's forward"; fi
  elif incus_answers; then
    step "incus at $LAB_SOCKET is not the lab's: no instance touched"
  fi
  if pid1_is_systemd; then
    step "systemd host: leaving incus.service running"
  else
    stop_pid "$LAB_STATE/pids/gitserver"
    if alive "$LAB_STATE/pids/incusd"; then
      stop_pid "$LAB_STATE/pids/incusd"
      # incusd leaves its dnsmasq behind on SIGTERM; this version runs it with an
      # empty --pid-file, so find it by the bridge it serves.
      pkill -f "^dnsmasq .*--interface=incusbr0( |$)" && step "stopped incusd's dnsmasq" || true
    fi
    stop_pid "$LAB_STATE/pids/lxcfs"
  fi
  step "lab is down"
}

status() {
  for f in "$LAB_STATE"/pids/*; do
    [ -e "$f" ] || continue
    if alive "$f"; then echo "$(basename "$f"): running (pid $(cat "$f"))"; else echo "$(basename "$f"): not running"; fi
  done
  incus list --all-projects -f csv -c e,n,s 2>/dev/null || echo "incusd: not answering"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  sweep) is_lab_incus || die "the incus at $LAB_SOCKET is not the lab's: nothing swept"; sweep_dead_runs ;;
  env) cat "$LAB_STATE/lab.env" ;;
  *) echo "usage: $0 up|down|sweep|status|env" >&2; exit 2 ;;
esac
