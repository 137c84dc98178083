# Copyright: Fortress developers
# Apache-2.0
"""Host-side file operations below the workspace root that a sandbox cannot redirect.

A sandbox with a writable workspace can rename, replace and symlink anything in it at any
moment, so a path is never checked and then opened again: every path is walked from the
workspace root one component at a time, each opened relative to the directory before it
with O_NOFOLLOW (a symlink at any component below the root is refused, not followed), the
last one checked with fstat on the descriptor that is then read or written. Temporary
files are created exclusively (O_EXCL) in that verified directory and renamed there, so a
name the sandbox planted is never written through. Reads stop at a size cap and never
block on a FIFO or a device.

The walk gives what openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) gives, on every kernel
Python runs on, with one implementation (Python has no openat2 binding)."""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import stat

from .contract import MAX_FILE_SIZE
from .errors import SandboxError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PATH = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC


def parts_below(path: str, root: str, what: str = "host path") -> list[str]:
    """The components of `path` below the workspace root, refusing '..', relative paths and
    the root itself (compared as written and with the root's own symlinks resolved: the
    operator's root may be a symlink, nothing below it may)."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise SandboxError(f"{what} {path!r} must be an absolute path below {root}.")
    if ".." in path.split("/"):
        raise SandboxError(f"{what} {path} must not contain '..'.")
    clean = posixpath.normpath(path)
    for base in dict.fromkeys((posixpath.normpath(os.path.abspath(root)), os.path.realpath(root))):
        if clean.startswith(base.rstrip("/") + "/"):
            return clean[len(base.rstrip("/")) + 1 :].split("/")
    raise SandboxError(
        f"{what} {path} is outside the workspace root {root}: put workspaces below it."
    )


def _walk(root: str, parts: list[str], what: str, path: str) -> int:
    """A descriptor of the directory root/parts[0]/.../parts[-1], no symlink followed."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"the workspace root {root} cannot be opened ({exc.strerror}).") from exc
    try:
        for part in parts:
            nxt = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError as exc:
        os.close(fd)
        raise _refusal(exc, what, path) from exc
    return fd


def _refusal(exc: OSError, what: str, path: str) -> SandboxError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return SandboxError(
            f"{what} {path} is reached through a symlink or a non-directory below the "
            "workspace root: symlinks in workspaces are never followed on the host."
        )
    if exc.errno == errno.ENOENT:
        return SandboxError(f"{what} {path} does not exist: create the workspace first.")
    return SandboxError(f"{what} {path}: {exc.strerror}.")


def _path_fd(root: str, path: str, what: str) -> int:
    """An O_PATH descriptor of the name at path below root (no symlink at any component,
    the last one included; nothing of the file itself is touched)."""
    parts = parts_below(path, root, what)
    dfd = _walk(root, parts[:-1], what, path)
    try:
        return os.open(parts[-1], _PATH, dir_fd=dfd)
    except OSError as exc:
        raise _refusal(exc, what, path) from exc
    finally:
        os.close(dfd)


def _one_name(st: os.stat_result, what: str, path: str, done: str) -> None:
    """Refuse a regular file with a second hard link: its other name may be outside the
    root, which no walk can see and the link count can."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
        raise SandboxError(
            f"{what} {path} has {st.st_nlink} hard links: a file is {done} only if it has one "
            "name (its other names may be outside the workspace root)."
        )


def _open_leaf(root: str, path: str, what: str) -> int:
    """A read descriptor of the regular file at path (no symlink, FIFO, device, or file
    with a second name, which may be outside the root): the name is first opened as a path
    only, checked, then reopened through that descriptor, so the file read is the file
    checked."""
    pfd = _path_fd(root, path, what)
    try:
        st = os.fstat(pfd)
        if not stat.S_ISREG(st.st_mode):
            raise SandboxError(
                f"{what} {path} is not a regular file: only regular files are copied."
            )
        _one_name(st, what, path, "copied")
        return os.open(f"/proc/self/fd/{pfd}", _READ & ~os.O_NOFOLLOW)
    except OSError as exc:
        raise _refusal(exc, what, path) from exc
    finally:
        os.close(pfd)


def read_file(root: str, path: str, max_size: int, what: str = "src") -> bytes:
    """The bytes of a regular file below root, at most max_size of them."""
    fd = _open_leaf(root, path, what)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_size + 1)
    finally:
        os.close(fd)
    if len(data) > max_size:
        raise SandboxError(f"{what} {path} is larger than {max_size} bytes (max_size).")
    return data


def file_sha256(
    root: str, path: str, max_size: int = MAX_FILE_SIZE, what: str = "dest"
) -> str | None:
    """sha256 of a regular file below root; None if there is none there or it is larger
    than max_size (a symlink or anything else under that name is not read and counts as
    none: writing replaces it; a huge file, sparse or not, is never read whole)."""
    try:
        fd = _open_leaf(root, path, what)
    except SandboxError:
        return None
    digest = hashlib.sha256()
    try:
        if os.fstat(fd).st_size > max_size:
            return None
        left = max_size + 1
        while left > 0 and (chunk := os.read(fd, min(1 << 20, left))):
            digest.update(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return None if left <= 0 else digest.hexdigest()


def write_file(root: str, path: str, data: bytes, mode: int = 0o600, what: str = "dest") -> None:
    """Write data to path below root: a fresh temporary file created exclusively in the
    verified directory, then renamed over the name (a symlink there is replaced, never
    followed)."""
    parts = parts_below(path, root, what)
    dfd = _walk(root, parts[:-1], what, path)
    tmp = f".{parts[-1][:200]}.fortress-{os.urandom(8).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=dfd)  # fmt: skip
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as exc:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise _refusal(exc, what, path) from exc
    finally:
        os.close(dfd)


def open_source(root: str, path: str, what: str = "mount source") -> int:
    """An O_PATH descriptor of an existing directory, or regular file with one name, below
    root with no symlink at any component: what a mount may be made from (mounts.stage
    mounts this descriptor, never the name)."""
    fd = _path_fd(root, path, what)
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            raise SandboxError(
                f"{what} {path} is a symlink: symlinks in workspaces are never followed on the "
                "host."
            )
        if stat.S_ISSOCK(st.st_mode):
            raise SandboxError(f"{what} {path} is a socket: sockets are never used.")
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise SandboxError(f"{what} {path} is not a directory or a regular file.")
        _one_name(st, what, path, "mounted")
    except BaseException:
        os.close(fd)
        raise
    return fd


def verified_path(root: str, path: str, what: str = "mount source") -> str:
    """The path open_source accepts, as a string (the checks alone)."""
    os.close(open_source(root, path, what))
    return posixpath.join(os.path.realpath(root), *parts_below(path, root, what))


def load_key(path: str) -> bytes:
    """The host's fingerprint key: 32 random bytes in a file only its owner (this process's
    user) can read, made on first use. It is written whole to a temporary file and linked
    into place, so first uses at once agree on one key and a crash leaves none half-made."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o750, exist_ok=True)
    if not os.path.lexists(path):
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(8).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)  # fmt: skip
        try:
            os.write(fd, os.urandom(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another first use linked its key first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"the fingerprint key {path} cannot be read ({exc.strerror}).") from exc
    try:
        st = os.fstat(fd)
        key = os.read(fd, 64) if stat.S_ISREG(st.st_mode) else b""
    finally:
        os.close(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077 or len(key) != 32 or not any(key):
        raise SandboxError(
            f"the fingerprint key {path} is not a private 32-byte file of this user: remove it "
            "and run again (a new key recreates each sandbox once, at its next converge)."
        )
    return key
