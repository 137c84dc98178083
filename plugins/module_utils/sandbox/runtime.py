# Copyright: Fortress developers
# Apache-2.0
"""What proves a sandbox's runtime (proof.py uses it): what the daemon says of its runtime
(`docker info`, before create), and the sandbox's runsc-sandbox process, read on the host
after start: its flags, and the sha256 of the binary it runs against the digests the roles
published (RUNSC_DIGESTS)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from typing import Any

from .contract import RUNSC_DIGESTS, RUNSC_FLAGS, RUNSC_OWN_FLAGS
from .errors import SandboxError

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def process_argv(pid: int, proc: str = "/proc") -> list[bytes]:
    """A process's command line, at most 64 KiB of it; [] when it is gone."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            return f.read(65536).split(b"\0")
    except OSError:
        return []


def runsc_sandbox_pids(container_id: str, proc: str = "/proc") -> list[int]:
    """Host PIDs of runsc-sandbox processes whose command line carries container_id, which
    must be a full container ID (a daemon's answer is hostile: an empty or short "ID" would
    match every sandbox on the host)."""
    if not isinstance(container_id, str) or not CONTAINER_ID.fullmatch(container_id):
        return []
    found = []
    for entry in os.listdir(proc):
        if not (entry.isascii() and entry.isdigit()):
            continue
        argv = process_argv(int(entry), proc)
        if argv and argv[0] == b"runsc-sandbox" and any(container_id.encode() in a for a in argv):
            found.append(int(entry))
    return found


def refused_sandbox_flags(argv: list[bytes]) -> list[str]:
    """The global flags of a runsc-sandbox process (before `boot`) that are neither runsc's
    own (RUNSC_OWN_FLAGS) nor allowed by RUNSC_FLAGS: what the sandbox really runs with."""
    if b"boot" not in argv[1:]:
        return [repr(b" ".join(argv)[:200])]
    refused = []
    for raw in argv[1 : argv.index(b"boot", 1)]:
        arg = raw.decode("ascii", errors="replace")
        name, value = [*arg.split("=", 1), ""][:2]
        # runsc writes its own flags as --name=value: a bare one would take the next
        # argument as its value, and that argument could be the "boot" this check stops at.
        own = name in RUNSC_OWN_FLAGS and "=" in arg
        if not own and value not in RUNSC_FLAGS.get(name, ()):
            refused.append(repr(arg[:200]) if not arg.isprintable() else arg[:200])
    return refused


RUNTIME_PATH = re.compile(r"[A-Za-z0-9._/+-]+")


def refused_runsc_flags(args: Any) -> list[str]:
    """The arguments of a runsc runtime that RUNSC_FLAGS does not allow (all of them if args
    is not a list of strings: a daemon's answer is hostile)."""
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return [repr(args)[:200]]
    refused = []
    for arg in args:
        name, value = [*arg.split("=", 1), ""][:2]
        if value not in RUNSC_FLAGS.get(name, ()):
            refused.append(arg[:200])
    return refused


def check_runsc_runtime(name: str, runtimes: Any) -> None:
    """Refuse a runtime that is not runsc run with allowed flags only, by what the daemon
    says of it (`docker info`), before anything is created under it."""
    known = runtimes if isinstance(runtimes, dict) else {}
    runtime = known.get(name) if isinstance(known.get(name), dict) else {}
    path = runtime.get("path")
    # A plain path: Docker writes a runtime with arguments into a shell script unquoted, so
    # "/usr/bin/runsc --strace" would run runsc with --strace. A shim runtime (runtimeType,
    # options) takes its flags from a file this check cannot read.
    is_runsc = (
        isinstance(path, str)
        and RUNTIME_PATH.fullmatch(path) is not None
        and posixpath.basename(path) == "runsc"
        and not {"runtimeType", "options"} & set(runtime)
    )
    if not name.startswith("runsc") or not is_runsc:
        raise SandboxError(
            f"runtime {name[:100]!r} is not a runsc runtime of this daemon (it has "
            f"{', '.join(sorted(str(k)[:100] for k in known)[:20])}): sandboxes run only under "
            "gVisor; converge site.yml (the gvisor role for a host's daemon, outer_sandbox for "
            "an outer container's)."
        )
    refused = refused_runsc_flags(runtime.get("runtimeArgs", []))
    if refused:
        raise SandboxError(
            f"runtime {name!r} runs runsc with {' '.join(refused)}, which sandboxes never run "
            f"under (allowed: {', '.join(RUNSC_FLAGS)} with their safe values; a debug or "
            "strace runtime is for debugging gVisor, not for agents): pick another runtime or "
            "fix its runtimeArgs in daemon.json (gvisor_runtime_extra_args)."
        )


# --- the binary a runsc-sandbox process runs ----------------------------------------------

DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_BINARY = 1 << 30  # runsc is about 30 MB; a larger "binary" is not one a role installed
# sha256 of a binary by (device, inode, size, mtime, ctime), where that key names one file's
# content: a file of the host daemon's (the host's filesystems are root's alone), or on a
# filesystem of a block device (an outer's runsc in its image's layers: the overlay reports
# the host disk's device and inode). An in-place rewrite changes the ctime, which no one
# sets. Never for an outer's file on an anonymous device (major 0): root in an outer can
# mount a filesystem of its own making (erofs from a plain file, FUSE) whose metadata it
# chose and present another file under a key seen before (attack review); no outer has a
# block device to mount.
_FILES: dict[tuple[int, ...], str] = {}
# sha256 by process instance (pid, start time): the binary a running process was started
# from does not change under it, so a process is hashed once per adapter process.
_PROCESSES: dict[tuple[int, int], str] = {}


def published_digests(directory: str = RUNSC_DIGESTS) -> set[str]:
    """The digests the roles published in directory/*.sha256 (sha256sum's format), read only
    from a root-owned directory and files no one else can write, no symlink followed."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fix = (
        "converge site.yml (the gvisor role publishes the host's runsc, outer_sandbox each "
        "outer image's)"
    )
    dfd = _opened(
        directory, flags | os.O_DIRECTORY,
        f"no runsc digests can be read at {directory} ({{}}), so no runtime can be proven: {fix}.",
    )  # fmt: skip
    found: set[str] = set()
    try:
        _root_owned(os.fstat(dfd), directory)
        for name in sorted(os.listdir(dfd)):
            if not name.endswith(".sha256"):
                continue
            fd = _opened(
                name, flags | os.O_NONBLOCK,
                f"the runsc digests {directory}/{name} cannot be read ({{}}): remove it or {fix}.",
                dfd,
            )  # fmt: skip
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise SandboxError(f"{directory}/{name} is not a file: remove it or {fix}.")
                _root_owned(st, f"{directory}/{name}")
                text = f.read(65536).decode("ascii", errors="replace")
            found.update(
                w[0] for w in map(str.split, text.splitlines()) if w and DIGEST.fullmatch(w[0])
            )
    finally:
        os.close(dfd)
    if not found:
        raise SandboxError(
            f"{directory} lists no runsc digest, so no runtime can be proven: {fix}."
        )
    return found


def _opened(path: str, flags: int, refusal: str, dir_fd: int | None = None) -> int:
    """os.open, else refusal (with {} for the system's reason) as a SandboxError: LOST, the
    daemon errors, include OSError."""
    try:
        return os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise SandboxError(refusal.replace("{}", exc.strerror or type(exc).__name__, 1)) from exc


def _root_owned(st: os.stat_result, path: str) -> None:
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise SandboxError(
            f"{path} is not root's alone (uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}): "
            "refusing runsc digests another user could have written; make it root's, mode 0755 "
            "for the directory and 0644 for its files."
        )


def binary_digest(pid: int, proc: str = "/proc", host: bool = False) -> str:
    """The sha256 of the binary process pid runs, read through its /proc exe link (the file
    the process was started from, whatever its path names now). Cached per process, and per
    file where the file's key names its content (host=True for a host daemon's; _FILES)."""
    fd = _opened(
        f"{proc}/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC,
        f"the runsc-sandbox process {pid} is gone or its binary cannot be read ({{}}): the "
        "sandbox did not stay up under its runtime.",
    )  # fmt: skip
    with os.fdopen(fd, "rb") as f:
        instance = (pid, _start_time(pid, proc))
        st = os.fstat(f.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        by_file = host or os.major(st.st_dev) != 0
        known = _PROCESSES.get(instance) or (_FILES.get(key) if by_file else None)
        if known is None and (not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BINARY):
            known = "not a binary a role installed"
        if known is None:
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            known = digest.hexdigest()
            if by_file:
                _FILES[key] = known
        if instance[1] >= 0:
            _PROCESSES[instance] = known
        return known


def _start_time(pid: int, proc: str) -> int:
    """A process's start time (clock ticks after boot: with its pid, one process instance),
    -1 when it cannot be read (then nothing is cached by it)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            return int(f.read(4096).rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


def unpublished_binaries(
    pids: list[int], directory: str, proc: str = "/proc", host: bool = False
) -> list[str]:
    """The digests of the binaries of pids that directory does not list."""
    allowed = published_digests(directory)
    found = {binary_digest(pid, proc, host) for pid in pids}
    return sorted(d for d in found if d not in allowed)
