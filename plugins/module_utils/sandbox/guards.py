# Copyright: Fortress developers
# Apache-2.0
"""Checks at the boundary: the daemon socket, mounts, paths inside a sandbox."""

from __future__ import annotations

import os
import posixpath
import stat

from .contract import NOT_A_TARGET
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
