"""Benchmark of site.yml converges per role, against a baseline revision in the same run
(not a test: it prints, it never fails CI).

For each tree, the baseline revision (a git worktree of --baseline) and then this checkout,
on N fresh container lab hosts (--count, default 2) with the lab's group_vars of that tree:
  first     ansible-playbook site.yml on hosts that never saw it
  idempotent the same again (must report changed=0)
  check     --check --diff on the converged hosts
  runner    the idempotent run again through ansible-runner, as `make demo` runs it
Wall seconds of each, tasks per host (ok and skipped), and the seconds each role's tasks took
in the idempotent run (ansible.posix.profile_tasks: a task's time spans all hosts). Beside
them, the checks each tree's roles carry (assert and fail tasks, tasks that validate a file
before installing it, and preflight tasks), counted from the task files: a faster converge
must not come from fewer checks. Printed as tables with ratios to the baseline; saved as
JSON in bench/results/.

    PYTHONPATH=tools .venv/bin/python bench/converge.py [--count 2] [--baseline 9bd38c4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from fortress_lab.common import REPO_ROOT
from fortress_lab.pytest_plugin import run_cli

LAB = "bench-converge"
BASELINE = "9bd38c4"  # the last commit before the converge work (issue 15)
_PROFILE = re.compile(r"^(?P<task>.*?) -+ (?P<secs>\d+\.\d+)s$")
_RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+).*skipped=(?P<sk>\d+)"
)
CHECK_MODULES = {"assert", "fail", "ansible.builtin.assert", "ansible.builtin.fail"}


def worktree(rev: str, parent: Path) -> Path:
    """A detached worktree of rev that resolves as the collection, as `make` sets one up."""
    tree = parent / f"tree-{rev}"
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), rev],
        check=True, capture_output=True,
    )  # fmt: skip
    link = tree / "collections/ansible_collections/fortress/agents"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("../../..")
    return tree


def _tasks(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        if "block" in node:
            for key in ("block", "rescue", "always"):
                yield from _tasks(node.get(key, []))
        else:
            yield node


def count_checks(tree: Path) -> dict[str, dict[str, int]]:
    """{role: {assert_fail, validate, preflight, tasks}} from the role's task files."""
    counts: dict[str, dict[str, int]] = {}
    for path in sorted(tree.glob("roles/*/tasks/*.yml")):
        role = path.parts[-3]
        row = counts.setdefault(role, {"assert_fail": 0, "validate": 0, "preflight": 0, "tasks": 0})
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            row["tasks"] += 1
            row["assert_fail"] += any(m in task for m in CHECK_MODULES)
            row["validate"] += any(
                isinstance(args, dict) and "validate" in args for args in task.values()
            )
            row["preflight"] += path.stem == "preflight"
    return counts


def playbook(tree: Path, inventory: Path, *extra: str) -> dict[str, Any]:
    """ansible-playbook site.yml of tree with profile_tasks: wall, recap and seconds per role."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tree / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory)]
    began = time.monotonic()
    done = subprocess.run(
        [*argv, str(tree / "site.yml"), *extra],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(
            f"bench/converge.py: site.yml {extra} failed in {tree}:\n{done.stdout[-3000:]}"
        )
    roles: dict[str, float] = {}
    hosts: dict[str, dict[str, int]] = {}
    for line in done.stdout.splitlines():
        if m := _PROFILE.match(line):
            task = m["task"]
            role = (
                task.split(" : ", 1)[0].removeprefix("fortress.agents.")
                if " : " in task
                else "(play)"
            )
            roles[role] = roles.get(role, 0.0) + float(m["secs"])
        elif m := _RECAP.match(line):
            hosts[m["host"]] = {k: int(m[k]) for k in ("ok", "changed", "sk")}
    return {
        "wall": round(wall, 1),
        "hosts": hosts,
        "roles": {k: round(v, 2) for k, v in roles.items()},
    }


def runner(tree: Path, inventory: Path) -> float:
    """Seconds of site.yml through ansible-runner with tree's own `make demo` code."""
    code = (
        "import sys; from pathlib import Path; from fortress_lab import demo; "
        "o = demo.run('site.yml', Path(sys.argv[1]), 'bench'); "
        "print('RESULT', o.rc, o.seconds, sum(s.get('changed', 0) for s in o.stats.values()))"
    )
    cfg = tree / "ansible.cfg"
    done = subprocess.run(
        [sys.executable, "-c", code, str(inventory)],
        env={**os.environ, "PYTHONPATH": str(tree / "tools"), "ANSIBLE_CONFIG": str(cfg)},
        cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), "")
    parts = line.split()
    if len(parts) != 4 or parts[1] != "0" or parts[3] != "0":
        raise SystemExit(
            f"bench/converge.py: the runner run failed in {tree}: {done.stdout[-2000:]}"
        )
    return round(float(parts[2]), 1)


def measure(tree: Path, count: int, work: Path) -> dict[str, Any]:
    inventory = work / f"{tree.name}-inventory" / "hosts.yml"
    inventory.parent.mkdir(parents=True)
    (inventory.parent / "group_vars").symlink_to(tree / "inventories/lab/group_vars")
    run_cli("down", "--lab", LAB)
    up = run_cli("up", "--lab", LAB, "--count", str(count), "--inventory", str(inventory))
    if up.returncode != 0:
        raise SystemExit(f"bench/converge.py: lab up failed: {up.stderr[-2000:]}")
    try:
        result = {"first": playbook(tree, inventory)}
        print(f"  {tree.name}: first {result['first']['wall']} s", flush=True)
        result["idempotent"] = playbook(tree, inventory)
        print(f"  {tree.name}: idempotent {result['idempotent']['wall']} s", flush=True)
        result["check"] = playbook(tree, inventory, "--check", "--diff")
        print(f"  {tree.name}: check {result['check']['wall']} s", flush=True)
        result["runner"] = {"wall": runner(tree, inventory)}
        print(f"  {tree.name}: runner {result['runner']['wall']} s", flush=True)
    finally:
        run_cli("down", "--lab", LAB)
    changed = [h for h, s in result["idempotent"]["hosts"].items() if s["changed"]]
    if changed:
        raise SystemExit(f"bench/converge.py: the second run changed {changed} in {tree}")
    return result


def ratio(new: float, old: float) -> str:
    return f"{new / old:.2f}x" if old else "-"


def report(doc: dict[str, Any]) -> None:
    base, cur = doc["baseline"], doc["current"]
    hosts, rev = doc["count"], doc["baseline_rev"]
    print(f"\nsite.yml on {hosts} container lab host(s), seconds (baseline {rev})")
    print(f"{'run':<12} {'baseline':>9} {'current':>9} {'ratio':>7}")
    for run in ("first", "idempotent", "check", "runner"):
        old, new = base["runs"][run]["wall"], cur["runs"][run]["wall"]
        print(f"{run:<12} {old:>9} {new:>9} {ratio(new, old):>7}")
    print("\ntasks per host in the idempotent run (ok + skipped)")
    for name in ("baseline", "current"):
        hosts = doc[name]["runs"]["idempotent"]["hosts"]
        print(f"  {name:<9} " + ", ".join(f"{h}: {s['ok']} + {s['sk']}" for h, s in hosts.items()))
    print("\nper role, idempotent run (seconds) and checks in its task files")
    print(
        f"{'role':<16} {'before s':>8} {'after s':>8} {'ratio':>7}   "
        f"{'assert/fail':>11} {'validate':>8} {'preflight':>9}  (before -> after)"
    )
    roles = sorted(
        set(base["runs"]["idempotent"]["roles"]) | set(cur["runs"]["idempotent"]["roles"])
    )
    for role in roles:
        old = base["runs"]["idempotent"]["roles"].get(role, 0.0)
        new = cur["runs"]["idempotent"]["roles"].get(role, 0.0)
        cb, cc = base["checks"].get(role, {}), cur["checks"].get(role, {})

        def pair(key: str, cb: dict[str, int] = cb, cc: dict[str, int] = cc) -> str:
            return f"{cb.get(key, 0)}->{cc.get(key, 0)}"

        print(
            f"{role:<16} {old:>8.1f} {new:>8.1f} {ratio(new, old):>7}   "
            f"{pair('assert_fail'):>11} {pair('validate'):>8} {pair('preflight'):>9}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    doc: dict[str, Any] = {
        "count": args.count,
        "baseline_rev": args.baseline,
        "current_rev": subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
        "machine": {"cores": os.cpu_count(), "kernel": os.uname().release},
    }
    with tempfile.TemporaryDirectory(prefix="fortress-bench-converge-") as tmp:
        work = Path(tmp)
        base_tree = worktree(args.baseline, work)
        try:
            for name, tree in (("baseline", base_tree), ("current", REPO_ROOT)):
                print(f"{name}: {tree}", flush=True)
                doc[name] = {"checks": count_checks(tree), "runs": measure(tree, args.count, work)}
        finally:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(base_tree)],
                check=False, capture_output=True,
            )  # fmt: skip
    report(doc)
    out = REPO_ROOT / "bench/results" / f"converge-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nsaved {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
