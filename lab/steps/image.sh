# Sourced by lab/lab.sh: the blank image and the projects that hold it (see docs/lab.md).
# shellcheck shell=bash

# The recipe is everything that decides the image's content; its hash names the cache.
# debootstrap cannot resolve virtual packages (nix-bin needs perl-dbdabi-94), so
# only the base goes through it and the rest through apt-get in the chroot.
IMAGE_BASE=systemd,systemd-sysv,udev,dbus,systemd-resolved,openssh-server,iproute2,ca-certificates
IMAGE_EXTRA="git nix-bin busybox-static nginx-light age openssl curl"
# The real sops CLI, built from the same pinned module the harness uses,
# stands in for nixpkgs' sops on the real host.
SOPS_MODULE=github.com/getsops/sops/v3/cmd/sops@v3.13.3
image_recipe_hash() {
  { echo "$IMAGE_BASE $IMAGE_EXTRA"; echo "$MIRROR $SOPS_MODULE"; declare -f build_image; cat "$REPO_ROOT/lab/image/nixos-rebuild"; } | sha256sum | cut -c1-16
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

# image_tarball is where the image of the current recipe is cached.
image_tarball() { echo "$LAB_CACHE/blank-$(image_recipe_hash).tar"; }

# start_image_build builds the sops CLI and the image tarball in the
# background: neither touches Incus, so they overlap the steps after the
# claim and the Incus set-up that need neither (targets, the seed suite's
# build: on a fresh machine, a minute or two saved). wait_image_build joins it.
start_image_build() {
  TARBALL=$(image_tarball)
  # A subshell of its own: errexit holds in it (it would not on the right of an &&).
  (build_sops; build_image) &
  IMAGE_JOB=$!
  # A bring-up that dies meanwhile lets the build finish (it mounts /proc in its chroot).
  trap 'wait "$IMAGE_JOB" 2>/dev/null || true' EXIT
}

wait_image_build() {
  wait "$IMAGE_JOB" || die "the image build failed (see above)"
  trap - EXIT
  [ -f "$TARBALL" ] || die "the image build left no $TARBALL"
}

build_image() {
  local hash tarball rootfs work
  hash=$(image_recipe_hash)
  tarball=$(image_tarball)
  mkdir -p "$LAB_CACHE/debs"
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
  # No name service on the link (LLMNR, mDNS): every machine of this image is
  # called nixos, and one answering another's probe for that name would be a
  # packet its own run counts as a contact. A stock NixOS runs no resolved.
  mkdir -p "$rootfs/etc/systemd/resolved.conf.d"
  printf '[Resolve]\nLLMNR=no\nMulticastDNS=no\n' >"$rootfs/etc/systemd/resolved.conf.d/no-link-names.conf"
  # Per-instance identity: empty machine-id, a fresh SSH host key generated
  # at first boot. Ed25519 only (the harness pins that one): `ssh-keygen -A`
  # also made RSA and ECDSA keys, half a CPU-second of every run.
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  printf 'HostKey /etc/ssh/ssh_host_ed25519_key\n' >"$rootfs/etc/ssh/sshd_config.d/host-key.conf"
  mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
  printf '[Service]\nExecStartPre=\nExecStartPre=/bin/sh -c %s\nExecStartPre=/usr/sbin/sshd -t\n' \
    "'test -s /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key'" \
    >"$rootfs/etc/systemd/system/ssh.service.d/hostkeys.conf"
  # Nix as the lab runs it: offline (no binary cache), no sandbox and no build
  # users in an unprivileged container.
  mkdir -p "$rootfs/etc/nix"
  printf 'build-users-group =\nsandbox = false\nsubstituters =\n' >"$rootfs/etc/nix/nix.conf"
  install -m 0755 "$LAB_CACHE/bin/sops" "$rootfs/usr/local/bin/sops"
  # The switch every cc-ci install.md runs: the lab's nixos-rebuild (see the file).
  install -m 0755 "$REPO_ROOT/lab/image/nixos-rebuild" "$rootfs/usr/local/sbin/nixos-rebuild"
  # A blank machine: nothing of cc-ci, not even nginx running.
  chroot "$rootfs" systemctl disable nginx >/dev/null 2>&1 || true
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  mkdir -p "$work/templates"
  cat >"$work/templates/authorized_keys.tpl" <<'EOF'
{{ config_get("user.ssh_authorized_keys", "") }}
EOF
  # A stock NixOS image calls itself nixos until its configuration names it.
  echo nixos >"$rootfs/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 nixos\n' >"$rootfs/etc/hosts"
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
