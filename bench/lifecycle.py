"""Benchmark of the sandbox lifecycle (not a test: it prints, it never fails CI on timing).

In one run, on one lab host converged by site.yml, median and p95 of:
  (a) bare `docker run --rm --runtime=runsc`            (the baseline)
  (b) the Python API's ephemeral task (create, exec, destroy, with host-side runsc check)
  (c) the Python API's exec in an existing sandbox
  (d) one fortress.agents.sandbox_exec one-shot through ansible-playbook
and, where the host runs an outer container (outer_sandbox role), the double sandbox:
  (e) bare `docker run --rm` through the outer's host-side socket
  (f) the Python API's ephemeral task through that socket
printed as absolute times and ratios to (a), and saved as JSON in bench/results/.

    PYTHONPATH=tools .venv/bin/python bench/lifecycle.py --inventory inventories/lab/hosts.yml \
        --host fortress-lab-1 [--reps 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fortress_lab.common import REPO_ROOT, client
from fortress_lab.playbook import run_playbook


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=REPO_ROOT / "inventories/lab/hosts.yml")
    parser.add_argument("--host", default="fortress-lab-1")
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()

    host = client().containers.get(args.host)
    host.exec_run(["mkdir", "-p", "/root/bench/sandbox"])
    copies = {
        "plugins/module_utils/sandbox/.": "sandbox",
        "bench/lifecycle_inner.py": "inner.py",
    }
    for src, dest in copies.items():
        target = f"{args.host}:/root/bench/{dest}"
        subprocess.run(["docker", "cp", str(REPO_ROOT / src), target], check=True)
    done = host.exec_run(["python3", "/root/bench/inner.py", str(args.reps)])
    if done.exit_code != 0:
        print(done.output.decode(), file=sys.stderr)
        return 1
    results: dict[str, list[float]] = json.loads(done.output.decode().strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        play = Path(tmp) / "one.yml"
        task = {
            "fortress.agents.sandbox_exec": {"image": "fortress/smoke:busybox", "argv": ["true"]}
        }
        play.write_text(json.dumps([{"hosts": args.host, "gather_facts": False, "tasks": [task]}]))
        results["ansible_module_one_shot"] = []
        for _ in range(args.reps):
            start = time.perf_counter()
            run = run_playbook(args.inventory, playbook=play)
            results["ansible_module_one_shot"].append(time.perf_counter() - start)
            if run.rc != 0:
                print(run.output[-2000:], file=sys.stderr)
                return 1

    base = statistics.median(results["bare_docker_run"])
    rows = []
    print(f"\n{'case':<26} {'median s':>9} {'p95 s':>8} {'x baseline':>11}")
    for name, values in results.items():
        med, p95 = statistics.median(values), pct(values, 0.95)
        rows.append({"case": name, "median": med, "p95": p95, "ratio": med / base, "runs": values})
        print(f"{name:<26} {med:>9.3f} {p95:>8.3f} {med / base:>11.2f}")
    out = REPO_ROOT / "bench/results" / f"lifecycle-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"host": args.host, "reps": args.reps, "rows": rows}, indent=2))
    print(f"\nsaved {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
