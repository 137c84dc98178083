# Copyright: Fortress developers
# Apache-2.0
"""Mount sources no sandbox can swap: each one bind-mounted from its checked descriptor.

Docker's API takes a path and resolves it again when the container starts, so a sandbox
that can write a directory on that path could swap it for a symlink in between and the
next sandbox would get a host directory. The library therefore opens each source with the
workspace walk (hostfs.open_source: no symlink at any component, one name), bind-mounts
that very descriptor (/proc/self/fd/N) onto a path of its own under STAGING_ROOT (root's,
mode 0700, outside every workspace) and gives Docker the staged path: the sandbox gets the
directory or file that was checked, whatever its name points to afterwards. A sandbox's
staged mounts (one directory per sandbox, named by its LABEL_MOUNTS token) are released
when the library removes it; the reaper releases those of sandboxes removed otherwise.

Only a daemon in this process's mount namespace sees these paths. Through an outer
container's socket the daemon would resolve the path inside the outer, where it names
whatever root in the outer put there, so mounts are refused there (host_daemon)."""

from __future__ import annotations

import ctypes
import os
import re
import socket
import stat
import struct
import time
from typing import Any

from . import hostfs
from .contract import STAGING_ROOT
from .errors import SandboxError
from .spec import Mount

MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
_TOKEN = re.compile(r"[0-9a-f]{32}")
_libc = ctypes.CDLL(None, use_errno=True)


def host_daemon(socket_path: str) -> bool:
    """Whether the process listening at socket_path (as the kernel reports it, not as the
    daemon says) runs in this process's mount namespace, and the socket listens in this
    process's network namespace. Anything unknown is False."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(socket_path)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        pid = struct.unpack("3i", creds)[0]
        theirs, ours = os.stat(f"/proc/{pid}/ns/mnt"), os.stat("/proc/self/ns/mnt")
        # The kernel reports the pid that listened, which may have exited and its number been
        # reused by a host process: the socket must also listen in this network namespace
        # (an outer's daemon listens in the outer's).
        with open("/proc/self/net/unix", encoding="utf-8", errors="replace") as table:
            listening = {os.path.realpath(row.split()[7]) for row in table
                         if len(row.split()) == 8 and row.split()[3] == "00010000"}  # fmt: skip
    except OSError:
        return False
    return (
        pid > 0
        and (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
        and os.path.realpath(socket_path) in listening
    )


def docker_mounts(mounts: list[Mount]) -> list[dict[str, Any]]:
    """Docker's Mounts for these mounts: bind mounts of existing sources (unlike the older
    Binds, Docker never makes a missing source; it refuses the container)."""
    return [{"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
            for m in mounts]  # fmt: skip


def mount_points() -> set[str]:
    """This mount namespace's mount points (/proc/self/mountinfo, octal escapes undone): a
    bind mount from the same filesystem is one too, which os.path.ismount cannot tell."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        points = [line.split(" ")[4] for line in info if line.count(" ") >= 5]
    return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), p) for p in points}


def missing(attrs: dict[str, Any], staging: str = STAGING_ROOT) -> list[str]:
    """The staged sources a container's inspect data names that are no longer mounted (a
    reboot empties /run; a removal elsewhere released them)."""
    host = attrs.get("HostConfig") if isinstance(attrs, dict) else None
    sources = [m.get("Source") for m in (host or {}).get("Mounts") or [] if isinstance(m, dict)]
    staged = [s for s in sources if isinstance(s, str) and s.startswith(staging.rstrip("/") + "/")]
    points = mount_points() if staged else set()
    return [s for s in staged if s not in points]


def _staging_root(staging: str) -> str:
    """The staging root, made if missing; refused unless a directory of this user only."""
    os.makedirs(staging, mode=0o700, exist_ok=True)
    st = os.lstat(staging)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SandboxError(
            f"{staging} is not a directory only this user can use: remove it (the library "
            "makes it again, mode 0700)."
        )
    return staging


def stage(mounts: list[Mount], root: str, staging: str = STAGING_ROOT) -> tuple[str, list[Mount]]:
    """(token, the mounts with staged sources); on any failure nothing stays mounted."""
    token = os.urandom(16).hex()
    base = os.path.join(_staging_root(staging), token)
    os.mkdir(base, 0o700)
    staged = []
    try:
        for index, mount in enumerate(mounts):
            fd = hostfs.open_source(root, mount.source)
            try:
                target = f"{base}/{index}"
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.mkdir(target, 0o700)
                else:
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                # Recursive, as Docker's own bind: a mount below the source stays over what
                # it covers.
                if _libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None,
                               MS_BIND | MS_REC, None) != 0:  # fmt: skip
                    err = ctypes.get_errno()
                    raise SandboxError(
                        f"mount source {mount.source} could not be bind-mounted for Docker "
                        f"({os.strerror(err)}): the library mounts workspaces as root with "
                        "CAP_SYS_ADMIN on the host; run it so."
                    )
            finally:
                os.close(fd)
            staged.append(Mount(target, mount.target, mount.read_only))
    except BaseException:
        release(token, staging)
        raise
    return token, staged


def release(token: str | None, staging: str = STAGING_ROOT) -> None:
    """Unmount and remove a sandbox's staged mounts (a token that is not one does nothing)."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return
    base = os.path.join(staging, token)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(base, name)
        _libc.umount2(path.encode(), MNT_DETACH | UMOUNT_NOFOLLOW)  # EINVAL: not mounted
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass  # still mounted (busy): the next sweep
    try:
        os.rmdir(base)
    except OSError:
        pass


def sweep(live: set[str], grace: float = 600.0, staging: str = STAGING_ROOT) -> list[str]:
    """Release the staged mounts of sandboxes that are gone (no container carries their
    token) and older than grace seconds (a create in flight has not labelled one yet)."""
    try:
        tokens = os.listdir(staging)
    except FileNotFoundError:
        return []
    released = []
    for token in tokens:
        if token in live or not _TOKEN.fullmatch(token):
            continue
        try:
            age = time.time() - os.lstat(os.path.join(staging, token)).st_mtime
        except FileNotFoundError:
            continue
        if age > grace:
            release(token, staging)
            released.append(token)
    return released
