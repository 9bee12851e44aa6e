# Sourced by lab/lab.sh: the targets, their git server, the long-lived instances, the D8 citation, the host defects and the lab's settings (see docs/lab.md).
# shellcheck shell=bash

# The miniature cc-ci target: generated once with fresh keys, then served by
# a real git server on the bridge (the machines' gateway address).
target_and_gitserver() {
  mkdir -p "$LAB_STATE/targets" "$LAB_STATE/gitserver"
  # The git server's SSH host key: the flavours pin it in git (bootstrap/known_hosts).
  local hostkey="$LAB_STATE/gitserver/ssh_host_ed25519_key"
  [ -f "$hostkey" ] || ssh-keygen -q -t ed25519 -N '' -C "cc-ci lab git server" -f "$hostkey"
  "$LAB_BIN/ccci-fixtures" generate -root "$LAB_STATE/targets" -domain "$LAB_DOMAIN" -gateway "${LAB_BRIDGE_CIDR%/*}" \
    -http-base "http://$LAB_GIT_LISTEN" -ssh-base "ssh://git@$LAB_GIT_SSH_LISTEN" -ssh-host-key "$hostkey.pub" | sed 's/^/[lab] /'
  if alive "$LAB_STATE/pids/gitserver"; then
    # Restart so a rebuilt binary is the one serving.
    kill "$(cat "$LAB_STATE/pids/gitserver")"; sleep 0.5
  fi
  setsid "$LAB_BIN/ccci-fixtures" serve -root "$LAB_STATE/targets" -listen "$LAB_GIT_LISTEN" \
    -ssh-listen "$LAB_GIT_SSH_LISTEN" -ssh-host-key "$hostkey" -fetch-log "$LAB_STATE/gitserver/fetches.jsonl" \
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

# The real host's TLS-passthrough gateway forwards 443 to the production
# instance, which serves the same certificate from git. The lab's: the
# bridge's address (CCCI_GATEWAY), port 443, forwarded to the reference by
# a DNAT of the host's own connections (nftables table ccci_lab_gateway).
# TLS asked there is the reference's answer, whatever a throwaway serves:
# the harness refuses CCCI_TLS_ADDR there (the matrix's tls-at-the-gateway).
gateway() {
  local gw=${LAB_BRIDGE_CIDR%/*} ip
  ip=$(incus list cc-nix-test --project "$LAB_PROJECT" -f csv -c 4 | grep -o '^[0-9.]* (eth0)' | cut -d' ' -f1 | head -n1)
  [ -n "$ip" ] || die "the reference $LAB_PROJECT/cc-nix-test has no IPv4 address: no gateway"
  nft delete table ip ccci_lab_gateway 2>/dev/null || true
  printf 'table ip ccci_lab_gateway {\n  chain output {\n    type nat hook output priority -100;\n    ip daddr %s tcp dport 443 dnat to %s:443\n  }\n}\n' "$gw" "$ip" |
    nft -f - || die "could not install the gateway's forward"
  step "gateway: $gw:443 forwards to the reference $LAB_PROJECT/cc-nix-test ($ip:443)"
}

# The lab runner's evidence signing key (CCCI_SIGNING_KEY) and the
# allowed_signers file a reviewer checks the lab's chains with (ccci verify,
# ssh-keygen -Y verify).
signing_key() {
  local d="$LAB_STATE/signing"
  install -d -m 0700 "$d"
  [ -f "$d/review_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "cc-ci lab runner" -f "$d/review_ed25519"
  printf 'lab-runner@cc-ci namespaces="ccci-review@cc-ci" %s\n' "$(cat "$d/review_ed25519.pub")" >"$d/allowed_signers"
  # A key nobody signs with, for the defect matrix's row whose reviewer trusts another runner.
  [ -f "$d/stranger_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "not the lab runner" -f "$d/stranger_ed25519"
  printf 'stranger@elsewhere namespaces="ccci-review@cc-ci" %s\n' "$(cat "$d/stranger_ed25519.pub")" >"$d/stranger_allowed_signers"
  step "evidence signing key: $(ssh-keygen -lf "$d/review_ed25519.pub" | cut -d' ' -f2) (allowed signers: $d/allowed_signers)"
}

# build_seed_suite builds the acceptance suite the seed runs use, once.
build_seed_suite() {
  SEED_SUITE="$LAB_BIN/acceptance.test"
  (cd "$REPO_ROOT" && GOTOOLCHAIN=local go test -c -o "$SEED_SUITE" ./acceptance) || die "could not build the acceptance suite"
}

# Each target's D8 evidence must cite a live rebuild of that very target by
# this harness, no older than a day (C5, CCCI_D8_MAX_AGE): a citation is
# bound to the base commit its run judged (or an ancestor with only the D8
# document changed since), to this Incus and to the lab runner's key. When a
# target's citation is older than 12h, a run of C4 against it makes a new one
# and its record is committed into the target's D8 evidence, as cc-ci's
# maintainers would after a run; a target whose C4 fails cites its failing
# run (C5 then says it did not pass). With the matrix's short waits: about
# 10 s a target, a minute for unit-hangs; two at a time (SEED_WORKERS), the
# suite built once.
seed_d8() {
  local ev="$LAB_STATE/evidence" name pids=()
  mkdir -p "$ev"
  : >"$ev/seeded"
  : >"$ev/unseeded"
  # Our own jobs only: the git server is a job of this shell too.
  for name in $("$LAB_BIN/ccci-fixtures" targets); do
    while [ "$(live "${pids[@]}")" -ge "${SEED_WORKERS:-2}" ]; do sleep 0.2; done
    seed_one "$name" &
    pids+=($!)
  done
  while [ "$(live "${pids[@]}")" -gt 0 ]; do sleep 0.2; done
  [ ! -s "$ev/unseeded" ] || die "target(s) with nothing to cite: $(tr '\n' ' ' <"$ev/unseeded")(logs: $ev/seed-<target>.log)"
  step "D8: every target cites a live run of itself from the last 12h ($(wc -l <"$ev/seeded") run now)"
  "$LAB_BIN/ccci-fixtures" cite -check -root "$LAB_STATE/targets" -target good -base-url "http://${LAB_GIT_LISTEN}/good/cc-ci.git" \
    -chain "$ev/REVIEW.jsonl" >/dev/null || die "the good target does not cite a fresh run of itself"
}

# live counts the processes of the given PIDs still running.
live() {
  local n=0 p
  for p in "$@"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done
  echo "$n"
}

# seed_one makes target $1 cite a fresh run of itself (nothing to do if it
# does). Runs beside another: the RAM cap leaves room for its throwaway too,
# the evidence chain takes one entry at a time (evidence.Append locks it).
seed_one() {
  local name=$1 ev="$LAB_STATE/evidence" base own=()
  base="http://${LAB_GIT_LISTEN}/$name/cc-ci.git"
  "$LAB_BIN/ccci-fixtures" cite -check -root "$LAB_STATE/targets" -target "$name" -base-url "$base" \
    -chain "$ev/REVIEW.jsonl" >/dev/null 2>&1 && return 0
  # A target's own settings (a flavour's: ccci-fixtures writes them) come last.
  [ -f "$LAB_STATE/targets/$name/settings.env" ] && mapfile -t own < <(grep -v '^#' "$LAB_STATE/targets/$name/settings.env")
  (cd "$REPO_ROOT/acceptance" && CCCI_CONFIG="$LAB_STATE/lab.env" CCCI_ACCEPTANCE=1 CCCI_REVIEW_FILE="$ev/REVIEW.md" \
    CCCI_OUT_DIR="$ev/out" CCCI_STATE_FILE="$ev/.run-state-$name.json" CCCI_RAM_CAP=16GiB \
    CCCI_BASE_REPO_URL="$base" CCCI_SECRETS_REPO_URL="http://${LAB_GIT_LISTEN}/$name/cc-ci-secrets.git" \
    CCCI_STEP_TIMEOUT=40s CCCI_CONVERGE_TIMEOUT=15s CCCI_SETTLE=3s CCCI_TLS_READY=10s \
    env "${own[@]}" "$SEED_SUITE" -test.count=1 -test.timeout 25m -test.run '^TestC4GenuineLiveRebuild$') >"$ev/seed-$name.log" 2>&1 || true
  if ! "$LAB_BIN/ccci-fixtures" cite -root "$LAB_STATE/targets" -target "$name" -base-url "$base" \
    -chain "$ev/REVIEW.jsonl" -out "$ev/out" | sed 's/^/[lab] /'; then
    tail -30 "$ev/seed-$name.log" >&2
    echo "[lab] the D8 seed run of target $name left nothing to cite (log: $ev/seed-$name.log)" >&2
    echo "$name" >>"$ev/unseeded"
    return 1
  fi
  echo "$name" >>"$ev/seeded"
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
  prebuilt_image
  if ! incus info "$LAB_OVERSIZED_REFERENCE" --project "$LAB_PROJECT" >/dev/null 2>&1; then
    incus init "$LAB_IMAGE_ALIAS" "$LAB_OVERSIZED_REFERENCE" --project "$LAB_PROJECT" -c limits.memory=6GiB \
      -c user.ccci-lab.role=host-defect >/dev/null
  fi
  step "host defects: images $LAB_NOT_BLANK_IMAGE and $LAB_PREBUILT_IMAGE, stopped reference $LAB_PROJECT/$LAB_OVERSIZED_REFERENCE (6GiB)"
}

# An image whose store already holds the good target's built system — copied
# from the reference's store and registered valid, never activated, no file
# of cc-ci outside the store: every residue probe finds it blank, and the
# switch has nothing left to build. Made again when the reference's system
# changes (about 30 s).
prebuilt_image() {
  local top want have tmp=ccci-lab-prebuild
  top=$(incus exec cc-nix-test --project "$LAB_PROJECT" -- readlink -f /run/current-system)
  want="$(image_recipe_hash)-prebuilt-${top##*/}"
  have=$(incus image get-property "$LAB_PREBUILT_IMAGE" ccci.recipe --project "$LAB_PROJECT" 2>/dev/null || true)
  [ "$have" = "$want" ] && return 0
  incus delete -f "$tmp" --project "$LAB_PROJECT" >/dev/null 2>&1 || true
  incus launch "$LAB_IMAGE_ALIAS" "$tmp" --project "$LAB_PROJECT" -c user.ccci-lab.role=host-defect >/dev/null
  # shellcheck disable=SC2016 # expanded by the reference's shell
  incus exec cc-nix-test --project "$LAB_PROJECT" -- sh -c 'nix-store --export $(nix-store --query --requisites "$1")' sh "$top" |
    incus exec "$tmp" --project "$LAB_PROJECT" -- nix-store --import >/dev/null ||
    die "could not copy the reference's system into $tmp"
  incus stop "$tmp" --project "$LAB_PROJECT"
  incus image delete "$LAB_PREBUILT_IMAGE" --project "$LAB_PROJECT" 2>/dev/null || true
  incus publish "$tmp" --project "$LAB_PROJECT" --alias "$LAB_PREBUILT_IMAGE" >/dev/null
  incus image set-property "$LAB_PREBUILT_IMAGE" ccci.recipe "$want" --project "$LAB_PROJECT"
  incus delete "$tmp" --project "$LAB_PROJECT"
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
CCCI_IMAGE=${LAB_IMAGE_ALIAS}
CCCI_INSTANCE_TYPE=container
CCCI_BASE_REPO_URL=http://${LAB_GIT_LISTEN}/good/cc-ci.git
CCCI_SECRETS_REPO_URL=http://${LAB_GIT_LISTEN}/good/cc-ci-secrets.git
CCCI_AGE_KEY_FILE=${LAB_STATE}/targets/good/keys/bootstrap-age-key.txt
CCCI_TLS_CA=${LAB_STATE}/targets/good/keys/ca.pem
CCCI_DOMAIN=${LAB_DOMAIN}
CCCI_TLS_SERVER_NAME=dashboard.${LAB_DOMAIN},drone.${LAB_DOMAIN}
CCCI_GATEWAY=${LAB_BRIDGE_CIDR%/*}
# What the plan names besides what the lab's targets declare: a repos-only
# run (CCCI_MACHINE=none) reads no declaration, and still judges these, each
# a key of secrets/secrets.yaml. The certificate and its key are binary sops
# files of their own, judged by content (C2) and as declared (C3).
CCCI_REQUIRED_SECRETS=drone_oauth_client_id,drone_oauth_client_secret,drone_rpc_secret,webhook_hmac,registry_username,registry_password
# The lab's bridge is the lab's: the machine's connections are observed there.
CCCI_EGRESS=nft
CCCI_EGRESS_ALLOW=${LAB_BRIDGE_CIDR%/*}:53
# … and which repositories it asks the git server for (one JSON line each).
CCCI_FETCH_LOG=${LAB_STATE}/gitserver/fetches.jsonl
# Each run's evidence entry is signed with the lab runner's key (signing_key).
CCCI_SIGNING_KEY=${LAB_STATE}/signing/review_ed25519
# The chain of the lab's own runs that the targets' D8 evidence cites (seed_d8),
# and the key a cited run must be signed with.
CCCI_D8_CHAIN=${LAB_STATE}/evidence/REVIEW.jsonl
CCCI_D8_ALLOWED_SIGNERS=${LAB_STATE}/signing/allowed_signers
# The lab's bounds (a container boots and stops in seconds, a step and a
# scan of its store take seconds): with the fixture's 5 blocks a run needs
# -timeout ≥ 38m (ccci doctor prints it).
CCCI_BOOT_TIMEOUT=2m
CCCI_STEP_TIMEOUT=2m
CCCI_SCAN_TIMEOUT=1m
CCCI_SHUTDOWN_TIMEOUT=1m
EOF
  step "settings: $LAB_STATE/lab.env"
}
