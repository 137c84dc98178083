# Copyright: Fortress developers
# Apache-2.0
"""Checks at the boundary: the daemon socket, mounts, paths inside a sandbox, the runtime."""

from __future__ import annotations

import os
import posixpath
import re
import stat
from typing import Any

from .contract import NOT_A_TARGET, RUNSC_FLAGS, RUNSC_OWN_FLAGS
from .errors import SandboxError
from .hostfs import verified_path
from .spec import Mount


def open_socket(path: str, owner: int = 0) -> int:
    """An O_PATH descriptor of the daemon socket at path, refused if the path is reached
    through a symlink, is not a socket, or is not owned by `owner` (root, or for an outer
    container in userns mode the host uid its root maps to, as whom that daemon creates its
    socket). The checks read the descriptor, not the path again, and the library connects
    through the descriptor (/proc/self/fd/N) every time: a socket renamed over the path
    afterwards (root in a dind outer is host uid 0 and can) never receives a request. What
    the checked daemon answers is still parsed as hostile (stream.py, transport.py)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise SandboxError(f"no Docker socket at {path}: is that daemon running?") from exc
    except OSError as exc:
        raise SandboxError(
            f"the Docker socket {path} cannot be opened ({exc.strerror}): give the path of a "
            "Docker daemon's socket."
        ) from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode) or os.readlink(f"/proc/self/fd/{fd}") != os.path.abspath(path):
            raise SandboxError(
                f"the Docker socket {path} is reached through a symlink: give its real path."
            )
        if not stat.S_ISSOCK(st.st_mode):
            raise SandboxError(
                f"{path} is not a socket: give the path of a Docker daemon's socket."
            )
        if st.st_uid != owner:
            expected = "root" if owner == 0 else f"uid {owner}"
            raise SandboxError(
                f"the Docker socket {path} is owned by uid {st.st_uid}, not {expected}: refusing "
                "a socket another user (or a compromised container) could have put there."
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


class SocketFd:
    """open_socket's descriptor, closed when the last object holding it (the Docker client
    that connects through it) is collected, never while that client can still use it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.path = f"/proc/self/fd/{fd}"

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def check_socket(path: str, owner: int = 0) -> None:
    """open_socket's checks alone (the descriptor is closed)."""
    os.close(open_socket(path, owner))


def check_mount(mount: Mount, workspace_root: str) -> Mount:
    """Only directories or files below the workspace root, reached with no symlink, never
    sockets or system paths."""
    source = verified_path(workspace_root, mount.source)
    # normpath keeps two leading slashes (POSIX leaves them to the system); Docker does not.
    target = posixpath.normpath(mount.target)
    target = "/" + target.lstrip("/") if posixpath.isabs(target) else target
    if not posixpath.isabs(target) or any(
        target == p or (p != "/" and target.startswith(p + "/")) for p in NOT_A_TARGET
    ):
        raise SandboxError(
            f"mount target {mount.target} is a system path: use a path like /workspace."
        )
    return Mount(source, target, mount.read_only)


def safe_path(path: str) -> str:
    """An absolute path inside the sandbox with no '..' component (file transfer)."""
    if not path.startswith("/") or ".." in path.split("/") or "\0" in path:
        raise SandboxError(f"path {path!r} must be absolute and must not contain '..'.")
    return posixpath.normpath(path)


def safe_workdir(path: str | None) -> str | None:
    """A working directory outside the kernel's pseudo-filesystems. A /proc/self/fd/N
    working directory is the CVE-2024-21626 escape (a leaked host fd); refused before any
    runtime sees it."""
    if path is None:
        return None
    clean = safe_path(path)
    if clean.lstrip("/").split("/")[0] in ("proc", "sys", "dev"):
        raise SandboxError(
            f"workdir {path!r} is under /proc, /sys or /dev, where a working directory can "
            "reach outside the sandbox (CVE-2024-21626): pick a directory of the image or a "
            "mount."
        )
    return clean


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
