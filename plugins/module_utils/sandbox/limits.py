# Copyright: Fortress developers
# Apache-2.0
"""Which of a sandbox's own limits fired during an exec: the kernel's counters of its cgroup
(pids: forks refused at pids.max; memory: OOM kills), read on the host through the
runsc-sandbox processes the runtime check finds (host daemon and outer sockets alike)."""

from __future__ import annotations

import os
import time

from .runtime import runsc_sandbox_pids

CGROUP_ROOT = "/sys/fs/cgroup"
# limit: (cgroup v1 controller, v1 file, v2 file, key of the counter)
COUNTERS = {
    "pids": ("pids", "pids.events", "pids.events", "max"),
    "memory": ("memory", "memory.oom_control", "memory.events", "oom_kill"),
}
MAX_READ = 4096  # a cgroup's counter file is a few lines


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_READ).decode(errors="replace")
    except OSError:
        return ""


def cgroup_dirs(pid: int, proc: str = "/proc", root: str = CGROUP_ROOT) -> dict[str, str]:
    """The process's cgroup directory per limit (v1: its controller's hierarchy; v2: the
    unified one), strictly below root whatever the path says."""
    v1, v2 = {}, None
    for line in _read(f"{proc}/{pid}/cgroup").split("\n"):  # cgroup names may hold \r
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        for controller in filter(None, controllers.split(",")):
            v1[controller] = path
    dirs = {}
    for limit, (controller, *_files) in COUNTERS.items():
        base, path = (f"{root}/{controller}", v1[controller]) if controller in v1 else (root, v2)
        if path is None:
            continue
        # Never the hierarchy's root (the whole machine's counters) nor anything outside it.
        where = os.path.normpath(f"{base}/{path.lstrip('/')}")
        if where.startswith(base + "/") and where.isprintable():
            dirs[limit] = where
    return dirs


class Watch:
    """A sandbox's counter files, held open while an exec runs and read every INTERVAL
    seconds (and whenever the kernel notifies the file, select's exceptional set): a limit
    whose firing kills the whole sandbox (pids under runsc: the Sentry cannot make a thread)
    is read in the tenths of a second before its cgroup goes."""

    INTERVAL = 0.01
    MAX_UPDATES = 1000  # a file that keeps signalling stops being watched

    def __init__(
        self, container_id: str, proc: str = "/proc", root: str = CGROUP_ROOT,
        pids: list[int] | None = None,
    ) -> None:  # fmt: skip
        self.files: dict[int, tuple[str, str]] = {}  # fd: (limit, key)
        found = runsc_sandbox_pids(container_id, proc) if pids is None else pids
        for pid in found[:4]:
            for limit, where in cgroup_dirs(pid, proc, root).items():
                if container_id not in os.path.basename(where):
                    continue  # not the sandbox's own cgroup (its outer's, or a planted one)
                v1_file, v2_file, key = COUNTERS[limit][1:]
                for name in (v1_file, v2_file):
                    try:
                        fd = os.open(f"{where}/{name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    except (OSError, ValueError):
                        continue
                    self.files[fd] = (limit, key)
                    break
        self.updates = 0
        self.last = time.monotonic()
        self.before = self.read()
        self.seen = dict(self.before)

    @property
    def fds(self) -> list[int]:
        return list(self.files) if self.updates < self.MAX_UPDATES else []

    def read(self) -> dict[str, int]:
        """Each limit's counter now (a file whose cgroup is gone reads nothing)."""
        now: dict[str, int] = {}
        for fd, (limit, key) in self.files.items():
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                text = os.read(fd, MAX_READ).decode(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                name, _sep, value = line.partition(" ")
                value = value.strip()
                if name == key and value.isascii() and value.isdigit() and len(value) < 20:
                    now[limit] = max(now.get(limit, 0), int(value))
        return now

    def timeout(self, left: float) -> float:
        """How long the exec's loop may wait before the next reading is due."""
        return (
            min(left, max(self.last + self.INTERVAL - time.monotonic(), 0)) if self.files else left
        )

    def due(self) -> None:
        """A reading, if one is due."""
        if self.files and time.monotonic() >= self.last + self.INTERVAL:
            self._take()

    def update(self) -> None:
        """A reading, because the kernel notified a file."""
        self.updates += 1
        self._take()

    def _take(self) -> None:
        self.last = time.monotonic()
        for limit, value in self.read().items():
            self.seen[limit] = max(self.seen.get(limit, 0), value)

    def fired(self, oom_killed: bool) -> list[str]:
        self._take()
        return fired(self.before, self.seen, oom_killed)

    def close(self) -> None:
        for fd in self.files:
            os.close(fd)
        self.files = {}


def fired(before: dict[str, int], after: dict[str, int], oom_killed: bool) -> list[str]:
    """The limits whose counters rose between the two readings (memory also when Docker
    recorded an OOM kill: a killed sandbox's cgroup is gone before it can be read)."""
    hit = {limit for limit, n in after.items() if n > before.get(limit, 0)}
    if oom_killed:
        hit.add("memory")
    return sorted(hit)
