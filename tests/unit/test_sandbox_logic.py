"""Pure logic of plugins/module_utils/sandbox.py (no Docker involved)."""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "sandbox.py"
_SPEC = importlib.util.spec_from_file_location("fortress_sandbox", _PATH)
assert _SPEC and _SPEC.loader
sb = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = sb  # dataclasses look their module up there
_SPEC.loader.exec_module(sb)


def test_sizes() -> None:
    assert sb.parse_size("512m", "memory") == 512 * 1024**2
    assert sb.parse_size("1G", "memory") == 1024**3
    assert sb.parse_size(None, "memory") is None
    for bad in ("lots", "0m", "-1m", "1.5g"):
        with pytest.raises(sb.SandboxError, match="memory must be a size"):
            sb.parse_size(bad, "memory")


def test_paths_with_dotdot_or_relative_are_refused() -> None:
    assert sb.safe_path("/workspace/out/a.txt") == "/workspace/out/a.txt"
    for bad in ("relative.txt", "/workspace/../etc/shadow", "/a/b/..", "/x\0y"):
        with pytest.raises(sb.SandboxError, match="must be absolute"):
            sb.safe_path(bad)


def test_workdirs_in_kernel_pseudo_filesystems_are_refused() -> None:
    assert sb.safe_workdir(None) is None
    assert sb.safe_workdir("/workspace/./src") == "/workspace/src"
    assert sb.safe_workdir("/procfs") == "/procfs"
    for bad in ("/proc/self/fd/7", "/proc", "/sys/fs/cgroup", "/dev/shm", "//proc/1/cwd"):
        with pytest.raises(sb.SandboxError, match="CVE-2024-21626"):
            sb.safe_workdir(bad)
    with pytest.raises(sb.SandboxError, match="must be absolute"):
        sb.safe_workdir("../proc/self/fd/7")


def test_mounts_only_below_the_workspace_root(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    (root / "job1").mkdir(parents=True)
    ok = sb.check_mount(sb.Mount(str(root / "job1"), "/workspace"), str(root))
    assert ok.source == str(root / "job1") and ok.read_only
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    for source in (tmp_path / "outside", root / "escape", root, root / "job1" / ".." / ".."):
        with pytest.raises(sb.SandboxError, match="outside the workspace root"):
            sb.check_mount(sb.Mount(str(source), "/workspace"), str(root))


def test_sockets_and_system_targets_are_never_mounted(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    path = root / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(sb.SandboxError, match="is a socket"):
            sb.check_mount(sb.Mount(str(path), "/workspace/s"), str(root))
    finally:
        server.close()
    (root / "job").mkdir()
    for target in ("/", "/etc", "/proc/self", "/var/run", "/usr/lib", "relative"):
        with pytest.raises(sb.SandboxError, match="system path"):
            sb.check_mount(sb.Mount(str(root / "job"), target), str(root))


def test_socket_checks(tmp_path: Path) -> None:
    with pytest.raises(sb.SandboxError, match="no Docker socket"):
        sb.check_socket(str(tmp_path / "missing.sock"))
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(sb.SandboxError, match="not a socket"):
        sb.check_socket(str(plain))
    real = tmp_path / "real.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(real))
    link = tmp_path / "link.sock"
    link.symlink_to(real)
    try:
        with pytest.raises(sb.SandboxError, match="through a symlink"):
            sb.check_socket(str(link))
        if os.geteuid() == 0:
            sb.check_socket(str(real))  # a root-owned socket passes
            os.chown(real, 1000, 1000)
            with pytest.raises(sb.SandboxError, match="owned by uid 1000, not root"):
                sb.check_socket(str(real))
    finally:
        server.close()


def test_runsc_sandbox_pids_match_the_container_id_only(tmp_path: Path) -> None:
    def proc(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    proc(10, "runsc-sandbox", "--root=/run/runsc", "boot", "abc123")
    proc(11, "runsc-gofer", "abc123")  # not the sandbox
    proc(12, "sh", "-c", "runsc-sandbox abc123")  # mentions it, is not it
    proc(13, "runsc-sandbox", "boot", "zzz999")
    (tmp_path / "self").mkdir()
    assert sb.runsc_sandbox_pids("abc123", str(tmp_path)) == [10]
    assert sb.runsc_sandbox_pids("nope", str(tmp_path)) == []


def test_demux_splits_frames_and_keeps_partial_ones() -> None:
    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxI", stream, len(data)) + data

    buf = frame(1, b"out") + frame(2, b"err") + frame(1, b"partial")[:-2]
    frames, rest = sb.demux(buf)
    assert frames == [(1, b"out"), (2, b"err")]
    assert rest == frame(1, b"partial")[:-2]


def test_fingerprint_ignores_name_and_hides_env_values() -> None:
    a = sb.SandboxSpec(image="img", name="a", env={"TOKEN": "s3cret"})
    b = sb.SandboxSpec(image="img", name="b", env={"TOKEN": "s3cret"})
    c = sb.SandboxSpec(image="img", name="a", env={"TOKEN": "other"})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert "s3cret" not in repr(a.fingerprint())


def test_defaults_are_the_safe_ones() -> None:
    spec = sb.SandboxSpec(image="img")
    assert spec.runtime == "runsc" and spec.network == "none" and spec.read_only
    assert spec.user == "65534:65534" and spec.pids and spec.memory


def test_audit_log_writes_json_lines_without_env_values(tmp_path: Path) -> None:
    log = sb.AuditLog(str(tmp_path / "audit" / "sandbox.log"))
    log.event("exec", sandbox="s1", argv=["echo", "hi"], env_keys=["TOKEN"], rc=0)
    line = (tmp_path / "audit" / "sandbox.log").read_text().strip()
    assert '"event": "exec"' in line and '"env_keys": ["TOKEN"]' in line
    assert oct((tmp_path / "audit" / "sandbox.log").stat().st_mode & 0o777) == "0o640"
