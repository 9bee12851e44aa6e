#!/usr/bin/env bash
# The embedded lab: a real Incus daemon on this machine, reachable over its
# unix socket and over HTTPS with a trusted client certificate, a btrfs pool,
# a managed bridge, the project terraform-ci and a locally built blank image.
#
#   lab/lab.sh up      idempotent bring-up (installs packages on first run)
#   lab/lab.sh down    stops only what `up` started, deletes harness-labelled instances
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
# The Incus this script talks to; the incus CLI and incusd waitready read INCUS_SOCKET too.
LAB_SOCKET=${INCUS_SOCKET:-/var/lib/incus/unix.socket}
export INCUS_SOCKET=$LAB_SOCKET
LAB_BIN=${LAB_BIN:-$LAB_STATE/bin}
START=$(date +%s)
step() { printf '[lab %4ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

pid1_is_systemd() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local need=()
  for c in incus:incus btrfs:btrfs-progs debootstrap:debootstrap nix-build:nix-bin \
           busybox:busybox-static openssl:openssl git:git curl:curl age:age \
           dnsmasq:dnsmasq-base nft:nftables ssh-keygen:openssh-client; do
    command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c#*:}")
  done
  [ ${#need[@]} -eq 0 ] && { step "packages: all present"; return; }
  step "packages: installing ${need[*]}"
  if [ ! -f /etc/apt/sources.list.d/bookworm-backports.sources ]; then
    cat >/etc/apt/sources.list.d/bookworm-backports.sources <<EOF
Types: deb
URIs: ${MIRROR}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  local bp=() rest=()
  for p in "${need[@]}"; do [ "$p" = incus ] && bp+=(incus) || rest+=("$p"); done
  [ ${#rest[@]} -gt 0 ] && apt-get install -y -qq --no-install-recommends "${rest[@]}" >/dev/null
  [ ${#bp[@]} -gt 0 ] && apt-get install -y -qq --no-install-recommends -t bookworm-backports incus >/dev/null
  step "packages: done"
}

incus_answers() { incus query /1.0 >/dev/null 2>&1; }

start_daemons() {
  mkdir -p "$LAB_STATE/pids" /var/log/incus
  if incus_answers; then
    step "incusd: already answering on $LAB_SOCKET"
    return
  fi
  [ "$LAB_SOCKET" = /var/lib/incus/unix.socket ] || die "nothing answers on INCUS_SOCKET=$LAB_SOCKET; the lab starts only its own daemon"
  if pid1_is_systemd; then
    systemctl start lxcfs incus.socket incus.service
  else
    if ! pgrep -x lxcfs >/dev/null; then
      # An lxcfs that was killed leaves its FUSE mount behind, stale.
      if ! ls /var/lib/lxcfs >/dev/null 2>&1; then
        umount -l /var/lib/lxcfs 2>/dev/null || true
        step "lxcfs: removed the stale mount a killed lxcfs left"
      fi
      mkdir -p /var/lib/lxcfs
      lxcfs /var/lib/lxcfs >/var/log/incus/lxcfs.log 2>&1 &
      echo $! >"$LAB_STATE/pids/lxcfs"
      step "lxcfs started (pid $!)"
    fi
    if ! incusd waitready --timeout=1 >/dev/null 2>&1; then
      # setsid: the daemon must outlive the shell that started it.
      setsid incusd --group incus-admin --logfile=/var/log/incus/incus.log </dev/null >/dev/null 2>&1 &
      echo $! >"$LAB_STATE/pids/incusd"
      step "incusd started (pid $!)"
    fi
  fi
  incusd waitready --timeout=60 || die "incusd did not become ready in 60s (see /var/log/incus/incus.log)"
  step "incusd ready"
}

# fixtures_bin builds the lab's Go tool (cached by go build).
fixtures_bin() {
  mkdir -p "$LAB_BIN"
  (cd "$REPO_ROOT" && GOTOOLCHAIN=local go build -o "$LAB_BIN/ccci-fixtures" ./fixtures/cmd/ccci-fixtures)
}

# claim_incus: the first word with the Incus, before any change.
claim_incus() {
  fixtures_bin
  "$LAB_BIN/ccci-fixtures" lab-claim -socket "$LAB_SOCKET" -lab-cert "$LAB_STATE/tls/client.crt" ||
    die "this Incus is not the lab's: nothing was changed (see above)"
  step "incus: the lab's (marked user.ccci-lab.owner)"
}

init_incus() {
  # Each piece on its own, so a bring-up interrupted half way completes next time.
  if ! incus storage show lab >/dev/null 2>&1; then
    incus storage create lab btrfs size="$LAB_POOL_SIZE" >/dev/null
    step "init: btrfs pool 'lab' ($LAB_POOL_SIZE loop file)"
  fi
  if ! incus network show incusbr0 >/dev/null 2>&1; then
    incus network create incusbr0 ipv4.address="$LAB_BRIDGE_CIDR" ipv4.nat=true ipv6.address=none >/dev/null
    step "init: bridge incusbr0 ($LAB_BRIDGE_CIDR)"
  fi
  ensure_profile_devices default
  # Never rebind: remote clients of this Incus depend on its address.
  local addr
  addr=$(incus config get core.https_address)
  if [ -z "$addr" ]; then
    incus config set core.https_address "$LAB_HTTPS"
  elif [ "$addr" != "$LAB_HTTPS" ]; then
    die "core.https_address is $addr, not $LAB_HTTPS: the lab never rebinds an address (set LAB_HTTPS=$addr to use it)"
  fi
  step "init: done"
}

ensure_profile_devices() {
  local p=$1
  incus profile device show default --project "$p" 2>/dev/null | grep -q '^root:' ||
    incus profile device add default root disk path=/ pool=lab --project "$p" >/dev/null
  incus profile device show default --project "$p" 2>/dev/null | grep -q '^eth0:' ||
    incus profile device add default eth0 nic network=incusbr0 name=eth0 --project "$p" >/dev/null
}

trust_client() {
  local d="$LAB_STATE/tls"
  mkdir -p "$d"; chmod 700 "$d"
  if [ ! -f "$d/client.key" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -sha384 -nodes -days 3650 \
      -subj "/CN=cc-ci-harness" -keyout "$d/client.key" -out "$d/client.crt" 2>/dev/null
    chmod 600 "$d/client.key"
  fi
  cp /var/lib/incus/server.crt "$d/server.crt"
  local fp
  fp=$(openssl x509 -in "$d/client.crt" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
  if ! incus config trust list -f csv -c f 2>/dev/null | grep -q "^${fp:0:12}"; then
    incus config trust add-certificate "$d/client.crt" --name cc-ci-harness
  fi
  step "https: $LAB_HTTPS trusts client cert ${fp:0:12}"
}

# The recipe is everything that decides the image's content; its hash names the cache.
# debootstrap cannot resolve virtual packages (nix-bin needs perl-dbdabi-94), so
# only the base goes through it and the rest through apt-get in the chroot.
IMAGE_BASE=systemd,systemd-sysv,udev,dbus,systemd-resolved,openssh-server,iproute2,ca-certificates
IMAGE_EXTRA="git nix-bin busybox-static nginx-light age openssl curl"
# The real sops CLI, built from the same pinned module the harness uses,
# stands in for nixpkgs' sops on the real host.
SOPS_MODULE=github.com/getsops/sops/v3/cmd/sops@v3.13.3
image_recipe_hash() {
  { echo "$IMAGE_BASE $IMAGE_EXTRA"; echo "$MIRROR $SOPS_MODULE"; declare -f build_image; } | sha256sum | cut -c1-16
}

build_sops() {
  local want="$LAB_CACHE/bin/sops" stamp="$LAB_CACHE/bin/sops.module"
  if [ -x "$want" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SOPS_MODULE" ]; then step "sops CLI: cached"; return; fi
  step "sops CLI: building $SOPS_MODULE (first time: a minute or two)"
  mkdir -p "$LAB_CACHE/bin"
  GOBIN="$LAB_CACHE/bin" GOTOOLCHAIN=local go install "$SOPS_MODULE"
  echo "$SOPS_MODULE" >"$stamp"
  step "sops CLI: built"
}

build_image() {
  local hash tarball rootfs work
  hash=$(image_recipe_hash)
  tarball="$LAB_CACHE/blank-$hash.tar"
  mkdir -p "$LAB_CACHE/debs"
  TARBALL=$tarball
  if [ -f "$tarball" ]; then step "image: cached $tarball"; return; fi
  step "image: debootstrap (recipe $hash) — takes a few minutes"
  work=$(mktemp -d "$LAB_CACHE/build.XXXXXX")
  rootfs="$work/rootfs"
  debootstrap --variant=minbase --cache-dir="$LAB_CACHE/debs" --include="$IMAGE_BASE" \
    bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
  step "image: base done, installing $IMAGE_EXTRA"
  mount -t proc proc "$rootfs/proc"
  rm -f "$rootfs/etc/resolv.conf"; cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # policy-rc.d: no service starts inside the build chroot.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"; chmod +x "$rootfs/usr/sbin/policy-rc.d"
  local rc=0
  chroot "$rootfs" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $IMAGE_EXTRA" \
    >>"$work/debootstrap.log" 2>&1 || rc=$?
  umount "$rootfs/proc"
  rm -f "$rootfs/usr/sbin/policy-rc.d"
  [ $rc -eq 0 ] || { tail -20 "$work/debootstrap.log" >&2; die "apt-get install in the image failed (log: $work/debootstrap.log)"; }
  # Network by systemd-networkd + resolved (udev is required for eth0 to leave "pending").
  mkdir -p "$rootfs/etc/systemd/network"
  printf '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n' >"$rootfs/etc/systemd/network/10-eth0.network"
  chroot "$rootfs" systemctl enable systemd-networkd systemd-resolved ssh >/dev/null 2>&1
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
  # Per-instance identity: empty machine-id, fresh SSH host keys generated at first boot.
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
  printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
    >"$rootfs/etc/systemd/system/ssh.service.d/hostkeys.conf"
  # Nix as the lab runs it: offline (no binary cache), no sandbox and no build
  # users in an unprivileged container.
  mkdir -p "$rootfs/etc/nix"
  printf 'build-users-group =\nsandbox = false\nsubstituters =\n' >"$rootfs/etc/nix/nix.conf"
  install -m 0755 "$LAB_CACHE/bin/sops" "$rootfs/usr/local/bin/sops"
  # A blank machine: nothing of cc-ci, not even nginx running.
  chroot "$rootfs" systemctl disable nginx >/dev/null 2>&1 || true
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  mkdir -p "$work/templates"
  cat >"$work/templates/authorized_keys.tpl" <<'EOF'
{{ config_get("user.ssh_authorized_keys", "") }}
EOF
  echo '{{ instance.name }}' >"$work/templates/hostname.tpl"
  printf '127.0.0.1 localhost\n127.0.1.1 {{ instance.name }}\n' >"$work/templates/hosts.tpl"
  cat >"$work/metadata.yaml" <<EOF
architecture: x86_64
creation_date: $(date +%s)
properties:
  os: debian
  release: bookworm
  description: cc-ci lab blank machine (recipe $hash)
  ccci.recipe: "$hash"
templates:
  /root/.ssh/authorized_keys:
    when: [create, copy, start]
    uid: 0
    gid: 0
    mode: "0600"
    create_only: false
    template: authorized_keys.tpl
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
EOF
  mkdir -p "$rootfs/root/.ssh"; chmod 700 "$rootfs/root/.ssh"
  tar -C "$work" -cf "$tarball.tmp" metadata.yaml templates rootfs
  mv "$tarball.tmp" "$tarball"
  rm -rf "$work"
  step "image: built $tarball"
}

import_image() {
  local tarball=$1 hash
  hash=$(image_recipe_hash)
  local have
  have=$(incus image get-property "$LAB_IMAGE_ALIAS" ccci.recipe 2>/dev/null || true)
  if [ "$have" != "$hash" ]; then
    incus image delete "$LAB_IMAGE_ALIAS" 2>/dev/null || true
    incus image import "$tarball" --alias "$LAB_IMAGE_ALIAS" >/dev/null
    step "image: imported as $LAB_IMAGE_ALIAS (recipe $hash)"
  else
    step "image: $LAB_IMAGE_ALIAS is current (recipe $hash)"
  fi
}

ensure_project() {
  local p=$1
  incus project show "$p" >/dev/null 2>&1 || incus project create "$p" -c features.images=true -c features.profiles=true >/dev/null
  ensure_profile_devices "$p"
  local want have
  want=$(incus image get-property "$LAB_IMAGE_ALIAS" ccci.recipe)
  have=$(incus image get-property "$LAB_IMAGE_ALIAS" ccci.recipe --project "$p" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    incus image delete "$LAB_IMAGE_ALIAS" --project "$p" 2>/dev/null || true
    incus image copy "$LAB_IMAGE_ALIAS" local: --target-project "$p" --copy-aliases >/dev/null
  fi
  step "project $p: image + profile ready"
}

LAB_GIT_LISTEN=${LAB_GIT_LISTEN:-${LAB_BRIDGE_CIDR%/*}:8418}
LAB_DOMAIN=${LAB_DOMAIN:-ci.lab.test}
LAB_NOT_BLANK_IMAGE=ccci-not-blank
LAB_OVERSIZED_REFERENCE=cc-nix-oversized
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The miniature cc-ci target: generated once with fresh keys, then served by
# a real git server on the bridge (the machines' gateway address).
target_and_gitserver() {
  mkdir -p "$LAB_STATE/targets"
  "$LAB_BIN/ccci-fixtures" generate -root "$LAB_STATE/targets" -domain "$LAB_DOMAIN" -gateway "${LAB_BRIDGE_CIDR%/*}" \
    | sed 's/^/[lab] /'
  if alive "$LAB_STATE/pids/gitserver"; then
    # Restart so a rebuilt binary is the one serving.
    kill "$(cat "$LAB_STATE/pids/gitserver")"; sleep 0.5
  fi
  setsid "$LAB_BIN/ccci-fixtures" serve -root "$LAB_STATE/targets" -listen "$LAB_GIT_LISTEN" \
    </dev/null >>/var/log/incus/ccci-gitserver.log 2>&1 &
  echo $! >"$LAB_STATE/pids/gitserver"
  for _ in $(seq 50); do curl -fs -o /dev/null "http://$LAB_GIT_LISTEN/good/cc-ci.git/info/refs?service=git-upload-pack" 2>/dev/null && break; sleep 0.1; done
  curl -fsS -o /dev/null "http://$LAB_GIT_LISTEN/good/cc-ci.git/info/refs?service=git-upload-pack" \
    || die "git server on $LAB_GIT_LISTEN does not answer (log: /var/log/incus/ccci-gitserver.log)"
  step "target: good target served at http://$LAB_GIT_LISTEN/good/"
}

# The long-lived instances of the real host: cc-nix-test (the running
# reference system, switched to the good target) and a decoy lichen-staging
# in another project. No harness run may touch either.
long_lived() {
  "$LAB_BIN/ccci-fixtures" reference -target "$LAB_STATE/targets/good" -project "$LAB_PROJECT" \
    -name cc-nix-test -git-url "http://$LAB_GIT_LISTEN/good" | sed 's/^/[lab] /'
  if ! incus info lichen-staging --project "$LAB_DECOY_PROJECT" >/dev/null 2>&1; then
    incus launch "$LAB_IMAGE_ALIAS" lichen-staging --project "$LAB_DECOY_PROJECT" -c limits.memory=4GiB \
      -c user.ccci-lab.role=decoy >/dev/null
  fi
  [ "$(incus config get lichen-staging user.ccci-lab.role --project "$LAB_DECOY_PROJECT")" = decoy ] ||
    die "$LAB_DECOY_PROJECT/lichen-staging exists without the lab's label user.ccci-lab.role=decoy: left alone"
  incus start lichen-staging --project "$LAB_DECOY_PROJECT" 2>/dev/null || true
  step "long-lived: $LAB_PROJECT/cc-nix-test (reference) and $LAB_DECOY_PROJECT/lichen-staging (decoy) running"
}

# The lab runner's evidence signing key (CCCI_SIGNING_KEY) and the
# allowed_signers file a reviewer checks the lab's chains with (ccci verify,
# ssh-keygen -Y verify).
signing_key() {
  local d="$LAB_STATE/signing"
  install -d -m 0700 "$d"
  [ -f "$d/review_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "cc-ci lab runner" -f "$d/review_ed25519"
  printf 'lab-runner@cc-ci namespaces="ccci-review@cc-ci" %s\n' "$(cat "$d/review_ed25519.pub")" >"$d/allowed_signers"
  step "evidence signing key: $(ssh-keygen -lf "$d/review_ed25519.pub" | cut -d' ' -f2) (allowed signers: $d/allowed_signers)"
}

# The targets' D8 evidence must cite a live rebuild by this harness no older
# than a day (C5, CCCI_D8_MAX_AGE). When the good target's citation is older
# than 12h, a run of C4 against it makes a new one, and its record is
# committed into every target, as cc-ci's maintainers would after a run.
seed_d8() {
  local ev="$LAB_STATE/evidence"
  mkdir -p "$ev"
  if "$LAB_BIN/ccci-fixtures" cite -check -root "$LAB_STATE/targets" -chain "$ev/REVIEW.jsonl" >/dev/null 2>&1; then
    step "D8: the targets cite a live run of the last 12h"
    return
  fi
  step "D8: a live rebuild of the good target to cite (C4 only, about 30 s)"
  (cd "$REPO_ROOT" && CCCI_CONFIG="$LAB_STATE/lab.env" CCCI_ACCEPTANCE=1 CCCI_REVIEW_FILE="$ev/REVIEW.md" \
    CCCI_OUT_DIR="$ev/out" CCCI_STATE_FILE="$ev/.run-state.json" GOTOOLCHAIN=local \
    go test -count=1 -timeout 15m -run '^TestC4GenuineLiveRebuild$' ./acceptance) >"$ev/seed.log" 2>&1 ||
    { tail -30 "$ev/seed.log" >&2; die "the D8 seed run failed (log: $ev/seed.log)"; }
  "$LAB_BIN/ccci-fixtures" cite -root "$LAB_STATE/targets" -chain "$ev/REVIEW.jsonl" -out "$ev/out" | sed 's/^/[lab] /'
}

# Defects of the host rather than the target, for the defect matrix: an image
# that is not blank (a certificate directory of an earlier deployment baked
# in) and a reference instance of the wrong size (stopped: it costs no RAM).
host_defects() {
  local want have work
  want="$(image_recipe_hash)-not-blank"
  have=$(incus image get-property "$LAB_NOT_BLANK_IMAGE" ccci.recipe --project "$LAB_PROJECT" 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    work=$(mktemp -d)
    cp "$TARBALL" "$work/image.tar"
    install -d -m 0755 "$work/rootfs/var/lib/ci-certs/live"
    echo "# left by an earlier deployment" >"$work/rootfs/var/lib/ci-certs/live/fullchain.pem"
    tar --append -f "$work/image.tar" -C "$work" --owner=0 --group=0 rootfs/var/lib/ci-certs
    incus image delete "$LAB_NOT_BLANK_IMAGE" --project "$LAB_PROJECT" 2>/dev/null || true
    incus image import "$work/image.tar" --alias "$LAB_NOT_BLANK_IMAGE" --project "$LAB_PROJECT" >/dev/null
    incus image set-property "$LAB_NOT_BLANK_IMAGE" ccci.recipe "$want" --project "$LAB_PROJECT"
    rm -rf "$work"
  fi
  if ! incus info "$LAB_OVERSIZED_REFERENCE" --project "$LAB_PROJECT" >/dev/null 2>&1; then
    incus init "$LAB_IMAGE_ALIAS" "$LAB_OVERSIZED_REFERENCE" --project "$LAB_PROJECT" -c limits.memory=6GiB \
      -c user.ccci-lab.role=host-defect >/dev/null
  fi
  step "host defects: image $LAB_NOT_BLANK_IMAGE, stopped reference $LAB_PROJECT/$LAB_OVERSIZED_REFERENCE (6GiB)"
}

write_env() {
  cat >"$LAB_STATE/lab.env" <<EOF
# Written by lab/lab.sh up: the harness settings that point at this lab.
CCCI_INCUS_URL=https://${LAB_HTTPS}
CCCI_INCUS_SOCKET=/var/lib/incus/unix.socket
CCCI_INCUS_CLIENT_CERT=${LAB_STATE}/tls/client.crt
CCCI_INCUS_CLIENT_KEY=${LAB_STATE}/tls/client.key
CCCI_INCUS_SERVER_CERT=${LAB_STATE}/tls/server.crt
CCCI_PROJECT=${LAB_PROJECT}
CCCI_DECOY_PROJECT=${LAB_DECOY_PROJECT}
CCCI_IMAGE=${LAB_IMAGE_ALIAS}
CCCI_INSTANCE_TYPE=container
CCCI_BASE_REPO_URL=http://${LAB_GIT_LISTEN}/good/cc-ci.git
CCCI_SECRETS_REPO_URL=http://${LAB_GIT_LISTEN}/good/cc-ci-secrets.git
CCCI_AGE_KEY_FILE=${LAB_STATE}/targets/good/keys/bootstrap-age-key.txt
CCCI_TLS_CA=${LAB_STATE}/targets/good/keys/ca.pem
CCCI_DOMAIN=${LAB_DOMAIN}
CCCI_GATEWAY=${LAB_BRIDGE_CIDR%/*}
# The lab's bridge is the lab's: the machine's connections are observed there.
CCCI_EGRESS=nft
CCCI_EGRESS_ALLOW=${LAB_BRIDGE_CIDR%/*}:53
# Each run's evidence entry is signed with the lab runner's key (signing_key).
CCCI_SIGNING_KEY=${LAB_STATE}/signing/review_ed25519
# The chain of the lab's own runs that the targets' D8 evidence cites (seed_d8).
CCCI_D8_CHAIN=${LAB_STATE}/evidence/REVIEW.jsonl
EOF
  step "settings: $LAB_STATE/lab.env"
}

up() {
  [ "$(id -u)" = 0 ] || die "lab up needs root"
  install_packages
  start_daemons
  claim_incus
  init_incus
  trust_client
  build_sops
  build_image
  import_image "$TARBALL"
  ensure_project "$LAB_PROJECT"
  ensure_project "$LAB_DECOY_PROJECT"
  target_and_gitserver
  signing_key
  write_env
  seed_d8
  long_lived
  host_defects
  step "lab is up"
}

# is_lab_incus: change nothing on an Incus that is not the lab's.
is_lab_incus() {
  incus_answers || return 1
  fixtures_bin
  "$LAB_BIN/ccci-fixtures" lab-claim -check -socket "$LAB_SOCKET"
}

delete_labelled() {
  # Only harness instances (created-by = the harness's value) in the lab's projects.
  local p
  for p in "$LAB_PROJECT" "$LAB_DECOY_PROJECT"; do
    incus list --project "$p" -f csv -c "n,config:user.${LAB_LABEL_PREFIX}.created-by" 2>/dev/null |
      while IFS=, read -r name creator; do
        [ "$creator" = cc-ci-acceptance ] || continue
        incus delete -f "$name" --project "$p" && step "deleted harness instance $p/$name"
      done
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

# Egress tables a killed run left behind (only the harness's own: ccci_egress_*).
sweep_egress_tables() {
  command -v nft >/dev/null || return 0
  nft list tables 2>/dev/null | awk '$1 == "table" && $2 == "inet" && $3 ~ /^ccci_egress_/ {print $3}' |
    while read -r t; do nft delete table inet "$t" && step "deleted leftover egress table $t"; done
}

down() {
  sweep_egress_tables
  if is_lab_incus; then
    delete_labelled; stop_long_lived
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
  env) cat "$LAB_STATE/lab.env" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
