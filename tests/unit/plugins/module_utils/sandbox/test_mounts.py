"""Staged mount sources (mounts.py), with real bind mounts on this machine (root, as the
modules run): what is staged is the directory or file that was checked, whatever its name
becomes; every failure and every release leaves no mount behind; a daemon is a host daemon
only when the kernel says it shares our mount namespace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    Mount,
    SandboxError,
    mounts,
)


def mounted_below(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "ws" / "job" / "sub").mkdir(parents=True)
    (tmp_path / "ws" / "job" / "sub" / "ok").write_text("CHECKED")
    (tmp_path / "ws" / "job" / "notes").write_text("NOTES")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("OUTSIDE")
    yield tmp_path
    for point in reversed(mounted_below(tmp_path)):  # a failed test leaves none either
        subprocess.run(["umount", "-l", point], check=False)


def test_the_staged_source_is_the_checked_one_whatever_its_name_becomes(root: Path) -> None:
    ws, staging = root / "ws", root / "staging"
    token, staged = mounts.stage(
        [Mount(f"{ws}/job/sub", "/work"), Mount(f"{ws}/job/notes", "/notes", False)],
        str(ws), str(staging),
    )  # fmt: skip
    assert [(m.target, m.read_only) for m in staged] == [("/work", True), ("/notes", False)]
    assert all(m.source.startswith(f"{staging}/{token}/") for m in staged)
    # The sandbox swaps the directory and the file for symlinks out of the root.
    (ws / "job" / "sub").rename(ws / "job" / "sub.real")
    (ws / "job" / "sub").symlink_to(root / "outside")
    (ws / "job" / "notes").unlink()
    (ws / "job" / "notes").symlink_to(root / "outside" / "secret")
    assert os.listdir(staged[0].source) == ["ok"]
    assert Path(staged[1].source).read_text() == "NOTES"
    assert oct(os.stat(staging).st_mode & 0o777) == "0o700"
    mounts.release(token, str(staging))
    assert mounted_below(root) == []
    assert os.listdir(staging) == []


def test_a_refused_source_leaves_nothing_staged(root: Path) -> None:
    ws, staging = root / "ws", root / "staging"
    (ws / "job" / "link").symlink_to(root / "outside")
    with pytest.raises(SandboxError, match="symlink"):
        mounts.stage(
            [Mount(f"{ws}/job/sub", "/work"), Mount(f"{ws}/job/link", "/link")],
            str(ws), str(staging),
        )  # fmt: skip
    assert mounted_below(root) == []
    assert os.listdir(staging) == []


def test_a_staging_root_others_can_write_is_refused(root: Path) -> None:
    staging = root / "staging"
    staging.mkdir(mode=0o777)
    staging.chmod(0o777)
    with pytest.raises(SandboxError, match="only this user"):
        mounts.stage([Mount(f"{root}/ws/job/sub", "/work")], str(root / "ws"), str(staging))
    assert mounted_below(root) == []


def test_the_sweep_releases_only_old_tokens_no_sandbox_carries(root: Path) -> None:
    ws, staging = root / "ws", root / "staging"
    made = [mounts.stage([Mount(f"{ws}/job/sub", "/w")], str(ws), str(staging))[0]
            for _ in range(3)]  # fmt: skip
    gone, live, young = made
    old = time.time() - 3600
    for token in (gone, live):
        os.utime(staging / token, (old, old))
    assert mounts.sweep({live}, staging=str(staging)) == [gone]
    assert sorted(os.listdir(staging)) == sorted([live, young])
    assert len(mounted_below(staging)) == 2
    for token in (live, young, "../../etc", "not-a-token"):
        mounts.release(token, str(staging))
    assert mounted_below(root) == []


SERVER = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(4)
print("up", flush=True)
while True:
    s.accept()[0].close()
"""


@pytest.mark.parametrize(
    "namespace",
    [
        pytest.param([], id="ours"),
        pytest.param(
            ["unshare", "--mount", "--propagation", "private"], id="another-mount-namespace"
        ),
        pytest.param(["unshare", "--net"], id="another-network-namespace"),
    ],
)
def test_a_daemon_is_the_hosts_only_in_our_mount_and_network_namespaces(
    tmp_path: Path, namespace: list[str]
) -> None:
    path = str(tmp_path / "docker.sock")
    server = subprocess.Popen(
        [*namespace, sys.executable, "-c", SERVER, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "up\n"
        # An outer's daemon listens in the outer's network namespace: even with the pid the
        # kernel reports reused by a host process, its socket is not one of ours.
        assert mounts.host_daemon(path) is (not namespace)
    finally:
        server.kill()
        server.wait()
    assert mounts.host_daemon(path) is False  # nobody listens: unknown is not the host


def test_a_path_that_is_no_socket_is_not_a_host_daemon(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s"))  # bound, never listening
        assert mounts.host_daemon(str(tmp_path / "s")) is False
    assert mounts.host_daemon(str(tmp_path / "missing")) is False


def test_what_is_mounted_below_a_source_is_what_the_sandbox_sees(root: Path) -> None:
    """The staged source is a recursive bind, as Docker's own was: an operator's mount below
    the source stays over what it hides, never the hidden files instead."""
    ws, staging = root / "ws", root / "staging"
    (ws / "job" / "sub" / "key").write_text("HIDDEN-UNDER-MASK")
    subprocess.run(["mount", "-t", "tmpfs", "mask", str(ws / "job" / "sub")], check=True)
    (ws / "job" / "sub" / "visible").write_text("VISIBLE")
    token, staged = mounts.stage([Mount(f"{ws}/job", "/w")], str(ws), str(staging))
    assert sorted(os.listdir(f"{staged[0].source}/sub")) == ["visible"]
    mounts.release(token, str(staging))
    subprocess.run(["umount", str(ws / "job" / "sub")], check=True)
    assert mounted_below(root) == []


def test_a_staged_mount_is_seen_as_mounted_until_released(root: Path) -> None:
    """missing() tells a released staged source from a mounted one, also when the source and
    the staging root are on one filesystem (here both under tmp_path, where os.path.ismount
    sees no mount point) and the source is a file."""
    ws, staging = root / "ws", root / "staging"
    token, staged = mounts.stage(
        [Mount(f"{ws}/job/sub", "/w"), Mount(f"{ws}/job/notes", "/n")], str(ws), str(staging)
    )
    attrs = {"HostConfig": {"Mounts": [{"Source": m.source} for m in staged]
                            + [{"Source": "/var/lib/other"}, "junk"]}}  # fmt: skip
    assert mounts.missing(attrs, str(staging)) == []
    mounts.release(token, str(staging))
    assert mounts.missing(attrs, str(staging)) == [m.source for m in staged]
    assert mounts.missing({"HostConfig": None}, str(staging)) == []
