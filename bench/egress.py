"""Benchmark of egress through a policy's proxy (not a test: it prints, it never fails CI).

On one container lab host converged by site.yml (its outer on the egress policy `lab`, as in
inventories/lab), with the egress test world up (fortress_lab.egress), each case fetches the
world's allowed API --requests times with one busybox wget (a new connection per request) and
times it where it runs; beside it, the cost of one short process there (--processes
runs of `echo x | cat`), since an agent's tools are processes too:
  (a) a runc container in the lab host's network, straight to the API  (the baseline)
  (b) the same container, through the policy's proxy                   (the proxy's cost)
  (c) an egress sandbox (runsc-egress in the outer), through the proxy (an agent's path)
Every request must succeed (wget's exit status) and the last answer be the API's. The cases
are interleaved in each round (--rounds); printed as medians and as ratios to (a); saved as
JSON in bench/results/.

    PYTHONPATH=tools .venv/bin/python bench/egress.py --host fortress-lab-1 [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time

from fortress_lab import egress
from fortress_lab.adversary import IMAGE, LabHost, run_sandboxed
from fortress_lab.common import REPO_ROOT

NAME = "api.allowed.test"  # the world's allowed API
API = f"http://{egress.NAMES[NAME]}/"  # asked by address, straight
NAMED = f"http://{NAME}/"  # through the proxy, which resolves it
# One wget for all N requests (busybox wget closes each connection: a new one per URL), after
# a loop of one short process per iteration: the cost of a process where the case runs.
# Busybox has no sub-second `date`: /proc/uptime (10 ms) around each whole loop.
SCRIPT = r"""
now() { read u _ < /proc/uptime; echo "$u"; }
urls=""; i=0
while [ $i -lt "$N" ]; do urls="$urls $URL"; i=$((i + 1)); done
a=$(now); i=0
while [ $i -lt "$PROCS" ]; do echo x | cat > /dev/null; i=$((i + 1)); done
b=$(now)
wget -q -O /dev/null $urls
rc=$? c=$(now)
echo "bench $a $b $c $rc"
wget -q -O - "$URL"
"""


def parse(output: str, case: str, requests: int, processes: int) -> tuple[float, float]:
    """(seconds per request, seconds per process) from SCRIPT's output; every request must
    have succeeded (wget's exit status) and the last answer must be the API's."""
    line = next((x for x in output.splitlines() if x.startswith("bench ")), None)
    if line is None or not line.endswith(" 0") or "world:api" not in output:
        raise SystemExit(f"bench/egress.py: case {case} did not reach the API: {output[-600:]}")
    a, b, c = (float(x) for x in line.split()[1:4])
    return (c - b) / requests, (b - a) / processes


def in_runc(host: LabHost, env: dict[str, str]) -> str:
    """SCRIPT in a runc container in the lab host's own network namespace."""
    flags = " ".join(f"-e {k}={shlex.quote(v)}" for k, v in env.items())
    script = shlex.quote(SCRIPT)
    return host.sh(f"docker run --rm --network host {flags} {IMAGE} /bin/sh -c {script}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="fortress-lab-1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=100)
    args = parser.parse_args()

    host = LabHost(args.host)
    gw4, _, port = egress.gateways(host)
    proxy = {"http_proxy": f"http://{gw4}:{port}"}  # what the library gives an egress sandbox
    counts = {"N": str(args.requests), "PROCS": str(args.processes)}
    cases = {
        "runc_direct": lambda: in_runc(host, {**counts, "URL": API}),
        "runc_via_proxy": lambda: in_runc(host, {**counts, "URL": NAMED, **proxy}),
        "gvisor_egress_via_proxy": lambda: run_sandboxed(
            host, script=SCRIPT, network=egress.POLICY, env={**counts, "URL": NAMED}
        ),
    }
    request: dict[str, list[float]] = {name: [] for name in cases}
    process: dict[str, list[float]] = {name: [] for name in cases}
    with egress.world(host):
        for round_no in range(args.rounds):
            for name, run in cases.items():
                per_request, per_process = parse(run(), name, args.requests, args.processes)
                request[name].append(per_request)
                process[name].append(per_process)
            print(f"[bench] round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    base = statistics.median(request["runc_direct"])
    base_process = statistics.median(process["runc_direct"])
    rows = []
    print(f"\n{'case':<25} {'ms/request':>10} {'x base':>7} {'ms/process':>10} {'x base':>7}")
    for name in cases:
        med, proc = statistics.median(request[name]), statistics.median(process[name])
        rows.append({
            "case": name, "request": med, "ratio": med / base,
            "process": proc, "process_ratio": proc / base_process,
            "requests": request[name], "processes": process[name],
        })  # fmt: skip
        print(f"{name:<25} {med * 1e3:>10.2f} {med / base:>7.2f} {proc * 1e3:>10.2f} "
              f"{proc / base_process:>7.2f}")  # fmt: skip
    out = REPO_ROOT / "bench/results" / f"egress-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"host": args.host, "rounds": args.rounds, "requests": args.requests,
            "processes": args.processes}  # fmt: skip
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2))
    print(f"\nsaved {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
