# Sourced by lab/lab.sh: the host and its Incus — packages, daemons, the claim, storage and network, HTTPS trust (see docs/lab.md).
# shellcheck shell=bash

install_packages() {
  local need=()
  for c in incus:incus btrfs:btrfs-progs debootstrap:debootstrap nix-build:nix-bin \
           busybox:busybox-static openssl:openssl git:git curl:curl age:age \
           dnsmasq:dnsmasq-base nft:nftables ssh-keygen:openssh-client pgrep:procps flock:util-linux; do
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

# start_fixtures_build builds the lab's Go tool in the background: on a fresh
# machine the module download and build take minutes, the packages' install
# about one. It touches no Incus; claim_incus waits for it.
start_fixtures_build() {
  (fixtures_bin) &
  FIXTURES_JOB=$!
}

# claim_incus: the first word with the Incus, before any change.
claim_incus() {
  wait "${FIXTURES_JOB:?start_fixtures_build first}" || die "could not build the lab's Go tool (ccci-fixtures, see above)"
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
