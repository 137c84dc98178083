#!/usr/bin/env bash
# Build the collection tarball, install it into an empty collections path and check that
# it serves the roles and plugins by their fully qualified names. With --sanity, also run
# `ansible-test sanity` on the installed copy (ansible-test needs the
# ansible_collections/<namespace>/<name> layout, which the installed copy has).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
WORK=$(mktemp -d /tmp/fortress-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

"$BIN/ansible-galaxy" collection build --force --output-path "$WORK/dist" . >/dev/null
tarball=$(ls "$WORK"/dist/fortress-agents-*.tar.gz)
echo "built $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"
if tar -tzf "$tarball" | grep -E '^(collections|\.venv|tools|\.cache|inventories/lab/hosts\.yml)(/|$)'; then
  echo "the tarball contains checkout-only paths (listed above): fix build_ignore in galaxy.yml" >&2
  exit 1
fi
cd "$WORK"   # away from the checkout and its ansible.cfg (which resolves the checkout itself)
printf "[defaults]\n" > "$WORK/ansible.cfg"
export ANSIBLE_CONFIG=$WORK/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$WORK/cp
"$BIN/ansible-galaxy" collection install --offline --force -p "$WORK/cp" "$tarball" >/dev/null 2>&1
for dir in "$ROOT"/roles/*/; do
  "$BIN/ansible-doc" -t role "fortress.agents.$(basename "$dir")" >/dev/null
done
# Every filter the installed collection registers, each with its documentation (ansible-doc
# fails on a filter without it), and one per plugin file: none left out of the listing.
filters=$("$BIN/ansible-doc" -t filter -l fortress.agents 2>/dev/null | awk '{print $1}')
for f in $filters; do "$BIN/ansible-doc" -t filter "$f" >/dev/null; done
files=$(find "$ROOT/plugins/filter" -name '*.py' ! -name '__init__.py' | wc -l)
if [ "$(wc -w <<<"$filters")" -ne "$files" ]; then
  echo "ansible-doc lists $(wc -w <<<"$filters") filters for $files filter plugin files: document each" >&2
  exit 1
fi
for path in "$ROOT"/plugins/modules/*.py; do
  [ -e "$path" ] || continue
  m=$(basename "$path" .py)
  "$BIN/ansible-doc" -t module "fortress.agents.$m" >/dev/null
done
"$BIN/ansible-playbook" -i localhost, --syntax-check \
  "$WORK/cp/ansible_collections/fortress/agents/site.yml" >/dev/null
echo "installed copy serves fortress.agents roles, plugins and site.yml by FQCN"

if [ "${1:-}" = "--sanity" ]; then
  # ansible-test bootstraps pip in its test venvs with a get-pip script it downloads from
  # ci-files.testing.ansible.com, which this machine cannot reach. Seed its cache with a
  # bootstrap that does the same from the standard library's ensurepip and PyPI.
  at=$("$BIN/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
  pipv=$(sed -n "s/.*pip='\([0-9.]*\)'.*/\1/p" "$at/_internal/python_requirements.py" | head -n1)
  shim=$HOME/.ansible/test/cache/get_pip_${pipv//./_}.py
  if ! grep -q "In a child process" "$shim" 2>/dev/null; then
    mkdir -p "$(dirname "$shim")"
    cat >"$shim" <<'PY'
"""get-pip substitute: ensurepip, then pip installs the requested pip and packages."""
import os
import subprocess
import sys

# ansible-test runs this with a reduced environment: carry the machine's CA bundle (for
# TLS-intercepting proxies) into the venv's own pip.conf so that its later pip runs work.
CERT = "/etc/ssl/certs/ca-certificates.crt"
if os.path.exists(CERT):
    with open(os.path.join(sys.prefix, "pip.conf"), "w") as conf:
        conf.write("[global]\ncert = %s\n" % CERT)
# In a child process: ensurepip sets PIP_CONFIG_FILE=/dev/null in its own environment.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
PY
  fi
  cd "$WORK/cp/ansible_collections/fortress/agents"
  printf "tests/output/\n" > .gitignore   # ansible-test puts its own venvs there
  git init -q . && git add -A >/dev/null   # ansible-test sanity looks at what git lists
  "$BIN/ansible-test" sanity --color no --venv --python "$("$BIN/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
fi
