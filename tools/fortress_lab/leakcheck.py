"""Before/after leak check: what a test created on a machine (or inside a lab host) and left.

Usage::

    with no_leaks():  # this machine
        ...
    with no_leaks(target="fortress-lab-1", ignore={"veths"}):  # inside a lab host
        ...
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import cast

from . import probe
from .common import LabError, client

_PROBE_SOURCE = Path(probe.__file__).read_text()


@dataclass(frozen=True)
class Snapshot:
    """What exists at one moment; every field is a frozenset of item strings."""

    target: str | None
    containers: frozenset[str]  # container ids, all states
    volumes: frozenset[str]  # volume names
    networks: frozenset[str]  # network ids
    mounts: frozenset[str]  # mount points (/proc/self/mountinfo)
    runsc: frozenset[str]  # "PID ARGV0" of runsc* processes and containerd shims
    qemu: frozenset[str]  # "PID ARGV0 -name NAME" of QEMU processes (VM lab hosts)
    veths: frozenset[str]  # veth interface names
    cgroups: frozenset[str]  # cgroup directories named after container ids

    def to_json(self) -> str:
        return json.dumps({k: sorted(v) if k != "target" else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        data = json.loads(text)
        return cls(data["target"], **{k: frozenset(data[k]) for k in CATEGORIES})


CATEGORIES = tuple(f.name for f in fields(Snapshot) if f.name != "target")


def snapshot(target: str | None = None) -> Snapshot:
    """Snapshot this machine (target None) or, via docker exec, the lab host `target`."""
    if target is None:
        api = client().api
        state = {
            **probe.system_state(),
            "containers": [c["Id"] for c in api.containers(all=True, quiet=True)],
            "volumes": [v["Name"] for v in api.volumes().get("Volumes") or []],
            "networks": [n["Id"] for n in api.networks()],
        }
    else:
        host = client().containers.get(target)
        done = host.exec_run(["python3", "-c", _PROBE_SOURCE], demux=True)
        out, err = cast("tuple[bytes | None, bytes | None]", done.output)
        try:
            state = json.loads(out or b"")
        except ValueError as exc:
            raise LabError(
                f"the leak probe failed inside {target}: {(err or b'').decode().strip()}"
            ) from exc
    return Snapshot(target, **{k: frozenset(state[k]) for k in CATEGORIES})


def diff(before: Snapshot, after: Snapshot) -> dict[str, set[str]]:
    """Items added between the snapshots, by category; categories without any are left out."""
    added = {k: set(getattr(after, k) - getattr(before, k)) for k in CATEGORIES}
    return {k: v for k, v in added.items() if v}


def leaks_since(
    before: Snapshot, ignore: Iterable[str] = (), settle: float = 10.0
) -> dict[str, set[str]]:
    """What is still added after `before`, re-checking for up to `settle` seconds (teardown is
    asynchronous: veths, runsc gofers and cgroups go away a moment after their container)."""
    ignored = set(ignore)
    if unknown := ignored - set(CATEGORIES):
        raise ValueError(f"unknown leak categories {sorted(unknown)}; known: {CATEGORIES}")
    deadline = time.monotonic() + settle
    while True:
        leaks = {k: v for k, v in diff(before, snapshot(before.target)).items() if k not in ignored}
        if not leaks or time.monotonic() >= deadline:
            return leaks
        time.sleep(0.5)


def describe(leaks: dict[str, set[str]], target: str | None) -> str:
    where = f"inside {target}" if target else "on this machine"
    lines = [f"leaked {where}:"]
    lines += [f"  {k}: {', '.join(sorted(v))}" for k, v in leaks.items()]
    return "\n".join(lines)


@contextmanager
def no_leaks(
    target: str | None = None, ignore: Iterable[str] = (), settle: float = 10.0
) -> Iterator[Snapshot]:
    """Raise AssertionError listing what the body left behind (checked only if it succeeds)."""
    before = snapshot(target)
    yield before
    leaks = leaks_since(before, ignore, settle)
    if leaks:
        raise AssertionError(describe(leaks, target))
