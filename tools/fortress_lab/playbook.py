"""Run a playbook from a test and read what happened per host and task.

Uses ansible-playbook with the json stdout callback, so a test can assert which tasks
changed or failed on which host (drift, check mode, bad input) without scraping text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import REPO_ROOT

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


@dataclass
class PlaybookRun:
    rc: int
    stats: dict[str, dict[str, int]]
    changed: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    diffs: dict[str, list[Any]] = field(default_factory=dict)
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    output: str = ""

    def changed_count(self, host: str) -> int:
        return self.stats.get(host, {}).get("changed", 0)

    def failure_text(self, host: str) -> str:
        return "\n".join(self.failed.get(host, []))


def assert_refused_before_any_change(
    inventory: str | Path,
    host: str,
    extra_vars: dict[str, Any],
    phrases: Sequence[str],
    fingerprint: Callable[[], object],
    case: str = "",
) -> None:
    """site.yml on `host` with bad `extra_vars` must fail, its failure must say each of
    `phrases`, and `fingerprint()` (what the run must not change) must be as before."""
    before = fingerprint()
    run = run_playbook(inventory, limit=host, extra_vars=extra_vars)
    assert run.rc != 0, f"{case}: the playbook succeeded"
    text = run.failure_text(host) or run.failure_text("*")
    for phrase in phrases:
        assert phrase in text, f"{case}: {phrase!r} not in the failure: {text[:1500]}"
    assert fingerprint() == before, f"{case}: the failed run changed the host"


def run_playbook(
    inventory: str | Path,
    *,
    playbook: str | Path = REPO_ROOT / "site.yml",
    limit: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    timeout: float = 900,
) -> PlaybookRun:
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)]
    if limit:
        argv += ["--limit", limit]
    if extra_vars:
        argv += ["--extra-vars", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    env.setdefault("ANSIBLE_CONFIG", str(REPO_ROOT / "ansible.cfg"))
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return parse(done.returncode, done.stdout, done.stderr)


def parse(rc: int, stdout: str, stderr: str = "") -> PlaybookRun:
    """Read the json callback's document; keep the raw text for messages."""
    start = stdout.find("{")
    try:
        doc = json.loads(stdout[start:]) if start >= 0 else {}
    except ValueError:
        doc = {}
    run = PlaybookRun(rc=rc, stats=doc.get("stats", {}), output=(stdout + "\n" + stderr).strip())
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            # "fortress.agents.gvisor : Install runsc" -> "Install runsc"
            name = task.get("task", {}).get("name", "?").split(" : ", 1)[-1]
            for host, result in task.get("hosts", {}).items():
                run.results.setdefault(name, {})[host] = result
                if result.get("changed"):
                    run.changed.setdefault(host, []).append(name)
                    # A loop's diffs are its items'.
                    for one in [result, *result.get("results", [])]:
                        if isinstance(one, dict) and one.get("diff"):
                            run.diffs.setdefault(host, []).append(one["diff"])
                if result.get("failed") or result.get("unreachable"):
                    msg = result.get("msg") or result.get("stderr") or json.dumps(result)[:500]
                    run.failed.setdefault(host, []).append(f"{name}: {msg}")
    if rc != 0 and not run.failed:
        # Failures before any task (argument specs, syntax) come as text on stderr.
        run.failed["*"] = [stderr.strip() or stdout.strip()]
    return run


def run_module(
    inventory: str | Path, host: str, name: str, args: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    """Run one fortress.agents module on host through ansible-playbook and return its result
    (failures included: the task ignores errors)."""
    play = Path(inventory).parent / f"play-{name}-{os.getpid()}.yml"
    task = {"name": "m", f"fortress.agents.{name}": args, "ignore_errors": True}
    play.write_text(json.dumps([{"hosts": host, "gather_facts": False, "tasks": [task]}]))
    run = run_playbook(inventory, playbook=play, **kw)
    assert "m" in run.results, run.output[-3000:]
    return run.results["m"][host]
