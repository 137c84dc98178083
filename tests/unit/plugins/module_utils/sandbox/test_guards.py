"""plugins/module_utils/sandbox/guards.py: the socket, mounts, in-sandbox paths, runsc."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    Mount,
    SandboxError,
    check_mount,
    check_socket,
    guards,
    runsc_sandbox_pids,
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


def test_runsc_sandbox_pids_match_the_container_id_only(tmp_path: Path) -> None:
    def proc(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    ours, other = "abc123" + "0" * 58, "999" * 21 + "9"
    proc(10, "runsc-sandbox", "--root=/run/runsc", "boot", ours)
    proc(11, "runsc-gofer", ours)  # not the sandbox
    proc(12, "sh", "-c", f"runsc-sandbox {ours}")  # mentions it, is not it
    proc(13, "runsc-sandbox", "boot", other)
    (tmp_path / "self").mkdir()
    assert runsc_sandbox_pids(ours, str(tmp_path)) == [10]
    assert runsc_sandbox_pids("0" * 64, str(tmp_path)) == []
    # A hostile daemon's "ID" that is a part of every ID (or not one at all) matches nothing.
    for hostile in ("", "9", "abc123", ours[:63], ours + "0", ours.upper(), None, 12):
        assert runsc_sandbox_pids(hostile, str(tmp_path)) == [], hostile


def test_only_directories_and_regular_files_are_mount_sources(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(SandboxError, match="not a directory or a regular file"):
        check_mount(Mount(str(root / "pipe"), "/workspace/p"), str(root))


def _role_runtime_args() -> list[str]:
    """The runtime arguments the gvisor role renders with its defaults (debug runtime aside)."""
    roles = Path(__file__).resolve().parents[5] / "roles" / "gvisor"
    defaults = yaml.safe_load((roles / "defaults" / "main.yml").read_text())
    rendered = []
    for arg in yaml.safe_load((roles / "vars" / "main.yml").read_text())["__gvisor_common_args"]:
        rendered.append(jinja2.Template(arg).render(**defaults))
    return [*rendered, f"--network={defaults['gvisor_network']}", "--network=none"]


def test_the_gvisor_roles_runtime_flags_are_allowed_and_weakening_ones_refused() -> None:
    assert guards.refused_runsc_flags(_role_runtime_args()) == []
    assert guards.refused_runsc_flags(["--ignore-cgroups", "--network=host"]) == []
    weakening = [
        "--debug", "--strace", "--debug-log=/tmp/x/", "--host-uds=all", "--host-uds=open",
        "--net-raw", "--TESTONLY-unsafe-nonroot", "-debug", "--Host-uds=none", "--host-uds",
        "all", "--network=sandbox\0", "--platform=", "",
    ]  # fmt: skip
    assert guards.refused_runsc_flags(weakening) == weakening
    for odd in ("--strace", None, {"--debug": True}, [1]):
        assert guards.refused_runsc_flags(odd) != []


def test_a_runtime_is_checked_by_name_binary_and_flags() -> None:
    ok = {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": _role_runtime_args()}}
    guards.check_runsc_runtime("runsc", ok)
    for name, runtimes, message in [
        ("runc", {"runc": {"path": "runc"}}, "not a runsc runtime"),
        ("runsc", {"runsc": {"path": "/usr/bin/runc"}}, "not a runsc runtime"),
        ("runsc", {"runsc": "/usr/bin/runsc"}, "not a runsc runtime"),
        ("runsc", None, "not a runsc runtime"),
        ("runsc", {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--strace"]}}, "--strace"),
    ]:
        with pytest.raises(SandboxError, match=message):
            guards.check_runsc_runtime(name, runtimes)


# Docker runs a runtime that has runtimeArgs through a script it writes, unquoted:
# `#!/bin/sh\n<path> <args...> $@` (moby's wrapRuntime). A value or a path with whitespace or
# a shell character becomes more flags, or a command. Found by an attack review.
SPLIT_BY_THE_SHELL = [
    "--overlay2=root:memory --strace --debug --debug-log=/tmp/x/",
    "--overlay2=root:memory\t--net-raw",
    "--overlay2=$(id>/tmp/pwn)",
    "--overlay2=root:memory;--strace",
]


def test_a_flag_or_path_dockers_shell_wrapper_would_split_is_refused() -> None:
    for arg in SPLIT_BY_THE_SHELL:
        assert guards.refused_runsc_flags([arg]) == [arg]
    for runtime in (
        {"path": "/usr/bin/runsc --strace --debug --platform=/runsc", "runtimeArgs": []},
        {"path": "/usr/bin/runsc", "runtimeType": "io.containerd.runsc.v1",
         "options": {"ConfigPath": "/etc/containerd/runsc.toml"}},
    ):  # fmt: skip
        with pytest.raises(SandboxError, match="not a runsc runtime"):
            guards.check_runsc_runtime("runsc", {"runsc": runtime})
    guards.check_runsc_runtime("runsc", {"runsc": {"path": "/usr/bin/runsc"}})  # control


# A runsc-sandbox command line as a lab host's outer daemon starts it (an egress runtime).
SANDBOX_ARGV = [
    b"runsc-sandbox", b"--log-format=json", b"--overlay2=root:memory", b"--host-uds=none",
    b"--network=host", b"--platform=systrap", b"--root=/var/run/docker/runtime-runc/moby",
    b"--log=/var/run/docker/containerd/daemon/x/log.json", b"--log-fd=3", b"boot",
    b"--apply-caps=false", b"--bundle=/b", b"--controller-fd=11", b"--cpu-num=2", b"c0ffee",
]  # fmt: skip


def test_a_sandbox_process_with_the_roles_flags_passes() -> None:
    assert guards.refused_sandbox_flags(SANDBOX_ARGV) == []


@pytest.mark.parametrize(
    "flag",
    [b"--strace", b"--debug", b"--debug-log=/var/log/runsc/", b"--host-uds=all", b"--net-raw",
     b"--TESTONLY-unsafe-nonroot=true", b"--network=sandbox\x1b[2J"],
)  # fmt: skip
def test_a_sandbox_process_running_with_a_weakening_flag_is_refused(flag: bytes) -> None:
    """What the host sees the sandbox run with, whatever the daemon said of its runtime:
    a flag a wrapper around runsc added is refused (only flags before `boot` are runsc's
    global ones; boot's own are runsc's)."""
    argv = [*SANDBOX_ARGV[:2], flag, *SANDBOX_ARGV[2:]]
    refused = guards.refused_sandbox_flags(argv)
    assert len(refused) == 1 and all(c.isprintable() for c in refused[0]), refused


def test_a_sandbox_process_without_boot_is_refused() -> None:
    assert guards.refused_sandbox_flags([b"runsc-sandbox", b"--strace"]) != []


def test_a_flag_that_would_take_boot_as_its_value_is_refused() -> None:
    """`--root boot --strace boot ...`: Go's flag package reads root=boot, then --strace;
    a check that stopped at the first "boot" would see only --root."""
    argv = [b"runsc-sandbox", b"--root", b"boot", b"--strace", *SANDBOX_ARGV[1:]]
    assert guards.refused_sandbox_flags(argv) == ["--root"]
