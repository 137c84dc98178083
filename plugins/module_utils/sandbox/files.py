# Copyright: Fortress developers
# Apache-2.0
"""Files into and out of a sandbox. Inside the sandbox they stream through the sandbox
itself (gVisor keeps its root filesystem's writes in its own overlay, which the host cannot
write into); on the host side they go through hostfs, which a sandbox cannot redirect."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from . import hostfs
from .contract import MAX_FILE_SIZE
from .errors import SandboxError, daemon_call
from .guards import safe_path
from .spec import parse_mode


class FilesMixin:
    """put_file, get_file, file_sha256 and the host-side copies, on the adapter."""

    workspace_root: str
    audit: Any

    @daemon_call("a file upload")
    def put_file(self, name: str, path: str, data: bytes, mode: str = "0600") -> None:
        """Write data to path in the sandbox, with an octal mode."""
        path, mode = safe_path(path), parse_mode(mode)
        result = self.exec(  # type: ignore[attr-defined]
            name, ["/bin/sh", "-c", 'cat > "$1" && chmod "$2" "$1"', "sh", path, mode], stdin=data
        )
        if result.rc != 0:
            raise SandboxError(f"could not write {path} in {name}: {result.stderr.strip()}")

    @daemon_call("a file download")
    def get_file(self, name: str, path: str, max_size: int = MAX_FILE_SIZE) -> bytes:
        """Stream a file out of the sandbox, base64-encoded on the way (binary-safe; the
        image needs base64, as busybox and coreutils have)."""
        path = safe_path(path)
        argv = ["/bin/sh", "-c", 'base64 < "$1"', "sh", path]
        result = self.exec(name, argv, max_output=max_size * 4 // 3 + 4096)  # type: ignore[attr-defined]
        if result.rc != 0:
            raise SandboxError(f"could not read {path} in {name}: {result.stderr.strip()}")
        if result.truncated:
            raise SandboxError(f"{path} in {name} is larger than {max_size} bytes.")
        try:
            data = base64.b64decode("".join(result.stdout.split()), validate=True)
        except binascii.Error as exc:
            raise SandboxError(
                f"what {name} sent for {path} is not base64 ({exc}): the image's base64 is "
                "broken, or the sandbox is hostile."
            ) from exc
        if len(data) > max_size:
            raise SandboxError(f"{path} in {name} is larger than {max_size} bytes.")
        return data

    @daemon_call("a file checksum")
    def file_sha256(self, name: str, path: str) -> str | None:
        """sha256 of a file in the sandbox (None if it does not exist or cannot be read)."""
        path = safe_path(path)
        result = self.exec(name, ["/bin/sh", "-c", 'sha256sum < "$1"', "sh", path])  # type: ignore[attr-defined]
        return result.stdout.split()[0] if result.rc == 0 and result.stdout.strip() else None

    def read_host_file(self, path: str, max_size: int = MAX_FILE_SIZE) -> bytes:
        """A regular file below the workspace root (never through a symlink, never a FIFO,
        at most max_size bytes)."""
        return hostfs.read_file(self.workspace_root, path, max_size, what="src")

    def copy_out(self, name: str, src: str, dest: str, max_size: int = MAX_FILE_SIZE,
                 check_mode: bool = False) -> tuple[bool, str, int]:  # fmt: skip
        """Copy a sandbox file to dest below the workspace root: (changed, sha256, size)."""
        hostfs.parts_below(dest, self.workspace_root, "dest")  # refuse before any exec
        data = self.get_file(name, src, max_size=max_size)
        digest = hashlib.sha256(data).hexdigest()
        changed = hostfs.file_sha256(self.workspace_root, dest, max_size) != digest
        if changed and not check_mode:
            hostfs.write_file(self.workspace_root, dest, data)
            self.audit.event("copy-out", sandbox=name, path=src, sha256=digest)
        return changed, digest, len(data)
