"""`make demo`: converge site.yml on the lab fleet through ansible-runner with per-host
progress, prove the sandbox on each host (playbooks/prove.yml), print a summary table."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from .common import REPO_ROOT, LabError, say

STATUS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_unreachable": "UNREACHABLE",
}


@dataclass
class Outcome:
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    rc: int = 0


def run(playbook: str, inventory: Path, tag: str) -> Outcome:
    """Run a playbook with ansible-runner, printing one line per changed/failed host task."""
    outcome = Outcome()
    started = time.monotonic()

    def on_event(event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        kind = event.get("event", "")
        if kind == "playbook_on_play_start":
            say(tag, f"PLAY {data.get('play', '')}")
        elif kind in STATUS:
            host, task = data.get("host", "?"), data.get("task", "")
            res = data.get("res", {})
            status = "changed" if kind == "runner_on_ok" and res.get("changed") else STATUS[kind]
            if status != "ok":
                detail = f": {res.get('msg', '')}" if status in ("FAILED", "UNREACHABLE") else ""
                say(tag, f"{host:<18} {status:<8} {task}{detail}")
            proof = res.get("ansible_facts", {}).get("fortress_proof")
            if proof:
                outcome.facts[host] = proof
        elif kind == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped"):
                for host, count in (data.get(key) or {}).items():
                    outcome.stats.setdefault(host, {})[key] = count
        return True

    with tempfile.TemporaryDirectory(prefix="fortress-runner-") as private:
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(REPO_ROOT),
            playbook=str(REPO_ROOT / playbook),
            inventory=str(inventory),
            envvars={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")},
            event_handler=on_event,
            quiet=True,
        )
    outcome.rc = result.rc
    outcome.seconds = time.monotonic() - started
    return outcome


def main(inventory: Path) -> int:
    if not inventory.is_file():
        raise LabError(f"no lab inventory at {inventory}: run `make lab-up` first.")
    say("demo", "converging site.yml on the lab fleet (changed and failed tasks are listed)")
    converge = run("site.yml", inventory, "converge")
    say("demo", f"converge finished in {converge.seconds:.0f} s (rc {converge.rc})")
    proof = Outcome()
    if converge.rc == 0:
        say("demo", "proving the sandbox on each host (playbooks/prove.yml)")
        proof = run("playbooks/prove.yml", inventory, "prove")
    print_summary(converge, proof)
    return 0 if converge.rc == 0 and proof.rc == 0 else 1


def _outer(proof: dict[str, Any]) -> str:
    if not proof.get("outer"):
        return "-" if not proof else "none"
    return f"{proof['outer']}[{proof['outer_runtime']},{proof['outer_capabilities']}]"


def print_summary(converge: Outcome, proof: Outcome) -> None:
    head = (
        "host",
        "ok",
        "changed",
        "failed",
        "outer[runtime,caps]",
        "outer wall",
        "runtime",
        "in gVisor",
        "kernel inside",
        "host kernel",
        "cold run s",
    )
    rows = []
    for host in sorted(converge.stats):
        s, p = converge.stats[host], proof.facts.get(host, {})
        failed = s.get("failures", 0) + s.get("dark", 0)
        rows.append(
            (
                host,
                str(s.get("ok", 0)),
                str(s.get("changed", 0)),
                str(failed),
                _outer(p),
                str(p.get("outer_wall", "-")),
                str(p.get("runtime", "-")),
                "yes" if p.get("runsc_sandbox_process") else "no",
                str(p.get("sandbox_kernel", "-")),
                str(p.get("host_kernel", "-")),
                f"{float(p['cold_start_seconds']):.2f}" if "cold_start_seconds" in p else "-",
            )
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print()
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    print()
    print(
        f"converge {converge.seconds:.0f} s, prove {proof.seconds:.0f} s; "
        "'in gVisor' is checked from the host side: Docker's runtime for the container and a "
        "live runsc-sandbox process carrying its ID. With an outer container the task went "
        "through its host-side socket: the double sandbox."
    )
