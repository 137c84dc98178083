"""plugins/module_utils/sandbox/guards.py: the socket, mounts, in-sandbox paths."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    Mount,
    SandboxError,
    check_mount,
    check_socket,
    safe_path,
    safe_workdir,
)


def test_paths_with_dotdot_or_relative_are_refused() -> None:
    assert safe_path("/workspace/out/a.txt") == "/workspace/out/a.txt"
    for bad in ("relative.txt", "/workspace/../etc/shadow", "/a/b/..", "/x\0y"):
        with pytest.raises(SandboxError, match="must be absolute"):
            safe_path(bad)


def test_workdirs_in_kernel_pseudo_filesystems_are_refused() -> None:
    assert safe_workdir(None) is None
    assert safe_workdir("/workspace/./src") == "/workspace/src"
    assert safe_workdir("/procfs") == "/procfs"
    for bad in ("/proc/self/fd/7", "/proc", "/sys/fs/cgroup", "/dev/shm", "//proc/1/cwd"):
        with pytest.raises(SandboxError, match="CVE-2024-21626"):
            safe_workdir(bad)
    with pytest.raises(SandboxError, match="must be absolute"):
        safe_workdir("../proc/self/fd/7")


def test_mounts_only_below_the_workspace_root_and_never_through_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    (root / "job1").mkdir(parents=True)
    ok = check_mount(Mount(str(root / "job1"), "/workspace"), str(root))
    assert ok.source == str(root / "job1") and ok.read_only
    (tmp_path / "outside").mkdir()
    for source in (tmp_path / "outside", root, root / "job1" / ".." / ".."):
        with pytest.raises(SandboxError, match=r"outside the workspace root|must not contain"):
            check_mount(Mount(str(source), "/workspace"), str(root))
    (root / "escape").symlink_to(tmp_path / "outside")
    (root / "alias").symlink_to(root / "job1")  # a symlink that stays inside is refused too
    for source in (root / "escape", root / "alias", root / "escape" / "x"):
        with pytest.raises(SandboxError, match="symlink"):
            check_mount(Mount(str(source), "/workspace"), str(root))


def test_sockets_and_system_targets_are_never_mounted(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    path = root / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(SandboxError, match="is a socket"):
            check_mount(Mount(str(path), "/workspace/s"), str(root))
    finally:
        server.close()
    (root / "job").mkdir()
    for target in ("/", "/etc", "/proc/self", "/var/run", "/usr/lib", "relative", "//etc",
                   "//proc", "//", "///usr/lib", "//var/run/docker.sock"):  # fmt: skip
        with pytest.raises(SandboxError, match="system path"):
            check_mount(Mount(str(root / "job"), target), str(root))


def test_socket_checks(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no Docker socket"):
        check_socket(str(tmp_path / "missing.sock"))
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(SandboxError, match="not a socket"):
        check_socket(str(plain))
    real = tmp_path / "real.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(real))
    link = tmp_path / "link.sock"
    link.symlink_to(real)
    try:
        with pytest.raises(SandboxError, match="through a symlink"):
            check_socket(str(link))
        if os.geteuid() == 0:
            check_socket(str(real))  # a root-owned socket passes
            os.chown(real, 1000, 1000)
            with pytest.raises(SandboxError, match="owned by uid 1000, not root"):
                check_socket(str(real))
    finally:
        server.close()


def test_only_directories_and_regular_files_are_mount_sources(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(SandboxError, match="not a directory or a regular file"):
        check_mount(Mount(str(root / "pipe"), "/workspace/p"), str(root))
