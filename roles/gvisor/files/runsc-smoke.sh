#!/usr/bin/env bash
# Smoke start of runsc against this kernel, without Docker: the same kind of start Docker
# performs (an OCI bundle, a network namespace of its own), with the runtime's flags.
#   runsc-smoke.sh RUNSC TIMEOUT [RUNSC_FLAG...]
# Exit status and output are runsc's (124 on timeout). Leaves nothing behind.
set -u
runsc=$1 limit=$2
shift 2
id="fortress-smoke-$$-$RANDOM"
dir=$(mktemp -d /tmp/fortress-smoke.XXXXXX)
cleanup() {
  "$runsc" delete -force "$id" >/dev/null 2>&1
  ip netns delete "$id" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

"$runsc" spec --bundle "$dir" -- /bin/true || exit $?
python3 - "$dir/config.json" "/var/run/netns/$id" <<'PY' || exit $?
import json
import sys

path, netns = sys.argv[1], sys.argv[2]
with open(path) as f:
    spec = json.load(f)
spec["root"] = {"path": "/", "readonly": True}
spec["process"]["terminal"] = False
for ns in spec["linux"]["namespaces"]:
    if ns["type"] == "network":
        ns["path"] = netns
with open(path, "w") as f:
    json.dump(spec, f)
PY
ip netns add "$id" || exit $?
timeout "$limit" "$runsc" "$@" run --bundle "$dir" "$id"
