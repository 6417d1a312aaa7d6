# Sourced by .ci/demo and .ci/test: installs the Debian packages a command needs when they are
# missing, so that both README commands work on a fresh Debian machine.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# install_missing PACKAGE... : apt-get installs the given packages, if any.
install_missing() {
  [ $# -gt 0 ] || return 0
  echo "==> installing $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
