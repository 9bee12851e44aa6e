# Sourced by lab/lab.sh and lab/soak.sh: every `incus` command they run goes
# to the Incus the lab claim examined (LAB_SOCKET), never elsewhere.
# shellcheck shell=bash
#
# The incus CLI sends a command to its configuration's default remote
# (`incus remote switch`), or to $INCUS_REMOTE, and into $INCUS_PROJECT
# (shared/cliconfig/file.go, cmd/incus/main.go); on a workstation whose CLI
# points at a real host, a bare `incus delete` would go there. --force-local
# does not prevent it: incus 6.0 reads that flag only to skip its first-run
# setup. So the lab gives the CLI a configuration of its own, whose default
# is the static remote `local` — unix://, i.e. $INCUS_SOCKET — and no other.
lab_pin_incus_cli() {
  local socket=$1 conf=$2
  unset INCUS_REMOTE INCUS_PROJECT
  export INCUS_SOCKET=$socket INCUS_CONF=$conf
  mkdir -p "$conf"
  printf 'default-remote: local\n' >"$conf/config.yml"
}
