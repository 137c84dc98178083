#!/usr/bin/env bash
# Fortress local engine bootstrap: the one implementation behind `make demo`, `make test`
# and `make bootstrap`. It prepares THIS machine (the controller and lab engine), never a
# product host: the product's roles never target the machine's own dockerd.
#
# Idempotent: installs only what is missing, starts only what is not running.
#   - Debian/Ubuntu packages: docker.io, runsc, debootstrap, apparmor (apparmor_parser for
#     compile checks), apt-cacher-ng (shared apt cache for image builds and lab hosts),
#     ShellCheck (ansible-test sanity and lint run it), qemu-system-x86, qemu-utils and
#     openssh-client (VM lab hosts: QEMU boots them, Ansible reaches them over SSH),
#     musl-tools (the gvisor role builds the static sandbox init on the controller),
#     python3-venv when the venv module is missing.
#   - the Python venv (.venv) with the pinned ranges of pyproject.toml, reinstalled only
#     when pyproject.toml changes.
#   - dockerd and apt-cacher-ng, through systemd when it is PID 1, as background
#     processes otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FORTRESS_VENV:-$ROOT/.venv}
STATE=${FORTRESS_STATE_DIR:-/var/lib/fortress-lab}
LOG_DIR=${FORTRESS_LOG_DIR:-/var/log/fortress-lab}
PYTHON=${PYTHON:-python3}
APT_PACKAGES=(docker.io runsc debootstrap apparmor apt-cacher-ng iptables iproute2 git make shellcheck musl-tools
              qemu-system-x86 qemu-utils openssh-client)
read -r -a extra <<< "${FORTRESS_EXTRA_PACKAGES:-}"
APT_PACKAGES+=("${extra[@]}")

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts dockerd): run it again with sudo."
OS_RELEASE=${FORTRESS_OS_RELEASE:-/etc/os-release}
[ -r "$OS_RELEASE" ] || die "cannot read $OS_RELEASE: Fortress's bootstrap supports Debian and Ubuntu only."
# shellcheck disable=SC1090
. "$OS_RELEASE"
case " ${ID:-} ${ID_LIKE:-} " in
  *" debian "*|*" ubuntu "*) ;;
  *) die "this is ${PRETTY_NAME:-an unknown system}; the bootstrap supports Debian and Ubuntu only (use a Debian 12/13 or Ubuntu 22.04/24.04 machine)." ;;
esac
mkdir -p "$STATE" "$LOG_DIR"

# --- packages -------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed: check this machine's apt sources and network."
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG_DIR/apt-install.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/apt-install.log" >&2; die "apt-get install ${missing[*]} failed (log: $LOG_DIR/apt-install.log)."; }
else
  say "packages present"
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$("$PYTHON" -V 2>&1) is too old: the controller needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)."

# --- shared apt cache ------------------------------------------------------------------
# apt-cacher-ng maps deb.debian.org to its backends_debian list, whose packaged default
# (ftp.debian.org) may not resolve where only deb.debian.org is reachable: point it there.
backends=/etc/apt-cacher-ng/backends_debian
acng_restart=0
if [ "$(grep -v '^#' "$backends" 2>/dev/null)" != "http://deb.debian.org/debian/" ]; then
  echo "http://deb.debian.org/debian/" > "$backends"
  acng_restart=1
fi

# --- services --------------------------------------------------------------------------
pid1=$(ps -p 1 -o comm= 2>/dev/null || true)

start_service() { # name, check command, background command line
  local name=$1 check=$2; shift 2
  if eval "$check" >/dev/null 2>&1; then return 0; fi
  if [ "$pid1" = systemd ]; then
    say "starting $name with systemctl"
    systemctl enable --now "$name" >/dev/null 2>&1 || systemctl start "$name"
  else
    say "starting $name in the background (no systemd as PID 1; log: $LOG_DIR/$name.log)"
    setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do
    eval "$check" >/dev/null 2>&1 && return 0
    sleep 1
  done
  tail -n 20 "$LOG_DIR/$name.log" >&2 2>/dev/null || true
  die "$name did not come up within 60 s (log above, or journalctl -u $name)."
}

if [ "$acng_restart" = 1 ]; then
  if [ "$pid1" = systemd ]; then systemctl restart apt-cacher-ng 2>/dev/null || true
  elif pkill -x apt-cacher-ng 2>/dev/null; then sleep 1; fi
fi
start_service apt-cacher-ng "bash -c 'exec 3<>/dev/tcp/127.0.0.1/3142'" \
  /usr/sbin/apt-cacher-ng -c /etc/apt-cacher-ng ForeGround=1
start_service docker "docker info" /usr/sbin/dockerd
say "dockerd $(docker version --format '{{.Server.Version}}' 2>/dev/null) ready, apt cache on :3142"

# --- python venv -------------------------------------------------------------------------
stamp="$VENV/.fortress-deps"
want=$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating the Python venv in $VENV (pinned ranges from pyproject.toml)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "${ROOT}[dev]" >"$LOG_DIR/pip-install.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/pip-install.log" >&2; die "pip install failed (log: $LOG_DIR/pip-install.log)."; }
  echo "$want" >"$stamp"
else
  say "venv up to date"
fi

# --- collection path: make the checkout resolve as fortress.agents ---------------------
mkdir -p "$ROOT/collections/ansible_collections/fortress"
ln -sfn ../../.. "$ROOT/collections/ansible_collections/fortress/agents"
say "ready"
