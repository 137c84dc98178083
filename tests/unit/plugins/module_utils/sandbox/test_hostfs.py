"""plugins/module_utils/sandbox/hostfs.py: host-side files a sandbox cannot redirect."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import SandboxError, hostfs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "job").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("OUTSIDE")
    return tmp_path / "ws"


def test_reads_and_writes_below_the_root(root: Path) -> None:
    hostfs.write_file(str(root), f"{root}/job/a.txt", b"hello", 0o640)
    assert (root / "job" / "a.txt").read_bytes() == b"hello"
    assert oct((root / "job" / "a.txt").stat().st_mode & 0o777) == "0o640"
    assert hostfs.read_file(str(root), f"{root}/job/a.txt", 5) == b"hello"
    assert hostfs.file_sha256(str(root), f"{root}/job/a.txt") is not None
    assert hostfs.file_sha256(str(root), f"{root}/job/missing") is None
    assert [p.name for p in (root / "job").iterdir()] == ["a.txt"]  # no temporary left


def test_a_symlink_at_any_component_is_refused_not_followed(root: Path) -> None:
    (root / "job" / "leaf").symlink_to(root.parent / "outside" / "secret")
    (root / "job" / "dir").symlink_to(root.parent / "outside")
    (root / "job" / "inner").symlink_to(root / "job")  # even one that stays inside
    for path in ("job/leaf", "job/dir/secret", "job/inner/leaf"):
        with pytest.raises(SandboxError, match="symlink"):
            hostfs.read_file(str(root), f"{root}/{path}", 100)
    with pytest.raises(SandboxError, match="symlink"):
        hostfs.write_file(str(root), f"{root}/job/dir/secret", b"x")
    assert (root.parent / "outside" / "secret").read_text() == "OUTSIDE"


def test_writing_replaces_a_planted_symlink_instead_of_following_it(root: Path) -> None:
    victim = root.parent / "outside" / "secret"
    (root / "job" / "out.json").symlink_to(victim)
    hostfs.write_file(str(root), f"{root}/job/out.json", b"PAYLOAD")
    assert victim.read_text() == "OUTSIDE"
    assert not (root / "job" / "out.json").is_symlink()
    assert (root / "job" / "out.json").read_bytes() == b"PAYLOAD"


def test_paths_outside_or_with_dotdot_are_refused(root: Path) -> None:
    for bad in ("/etc/passwd", f"{root}", f"{root}/job/../../outside/secret", "relative",
                f"{root}x/job"):  # fmt: skip
        with pytest.raises(
            SandboxError, match=r"outside the workspace root|must not contain|absolute"
        ):
            hostfs.read_file(str(root), bad, 100)


def test_a_fifo_is_refused_without_blocking_and_the_size_cap_holds(root: Path) -> None:
    os.mkfifo(root / "job" / "pipe")
    done: list[BaseException] = []

    def read() -> None:
        try:
            hostfs.read_file(str(root), f"{root}/job/pipe", 100)
        except SandboxError as exc:
            done.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert done and "not a regular file" in str(done[0])
    (root / "job" / "big").write_bytes(b"x" * 2048)
    with pytest.raises(SandboxError, match="larger than 1024 bytes"):
        hostfs.read_file(str(root), f"{root}/job/big", 1024)


def test_the_root_itself_may_be_a_symlink_the_operator_made(root: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(root)
    hostfs.write_file(str(tmp_path / "alias"), f"{tmp_path}/alias/job/a", b"ok")
    assert hostfs.verified_path(str(tmp_path / "alias"), f"{root}/job/a") == f"{root}/job/a"


def test_the_fingerprint_key_is_private_and_stable(tmp_path: Path) -> None:
    key = hostfs.load_key(str(tmp_path / "k" / "key"))
    assert len(key) == 32 and hostfs.load_key(str(tmp_path / "k" / "key")) == key
    assert oct((tmp_path / "k" / "key").stat().st_mode & 0o777) == "0o600"
    (tmp_path / "k" / "key").chmod(0o644)
    with pytest.raises(SandboxError, match="not a private 32-byte file of this user"):
        hostfs.load_key(str(tmp_path / "k" / "key"))


def test_first_uses_at_once_agree_on_one_key(tmp_path: Path) -> None:
    for round_ in range(100):
        path = str(tmp_path / f"k{round_}" / "key")
        keys: list[bytes | BaseException] = []

        def load(path: str = path, keys: list = keys) -> None:
            try:
                keys.append(hostfs.load_key(path))
            except SandboxError as exc:
                keys.append(exc)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({k if isinstance(k, bytes) else repr(k) for k in keys}) == 1, keys
        assert isinstance(keys[0], bytes)


def test_hashing_a_planted_sparse_dest_stops_at_the_size_cap(root: Path) -> None:
    """A sandbox that shares the workspace plants a huge sparse file (no disk used) where a
    root-run copy out will compare checksums: the hash must stop at the cap, not read it."""
    with open(root / "job" / "dest", "wb") as f:
        f.truncate(8 * 2**30)
    began = time.monotonic()
    assert hostfs.file_sha256(str(root), f"{root}/job/dest") is None  # over the cap: "changed"
    assert time.monotonic() - began < 3


def test_a_hard_link_to_a_file_outside_the_root_is_not_read(root: Path) -> None:
    """A hard link below the workspace root to a file outside it (made by root on the host:
    a sandbox cannot, see protected_hardlinks and gVisor's mounts) names the outside file
    itself: no walk can tell, only its link count. Control: the same file copied is read."""
    secret = root.parent / "outside" / "secret"
    os.link(secret, root / "job" / "linked")
    with pytest.raises(SandboxError, match="hard link"):
        hostfs.read_file(str(root), f"{root}/job/linked", 100)
    assert hostfs.file_sha256(str(root), f"{root}/job/linked") is None
    (root / "job" / "copied").write_bytes(secret.read_bytes())
    assert hostfs.read_file(str(root), f"{root}/job/copied", 100) == b"OUTSIDE"


def test_a_hard_linked_file_is_not_a_mount_source(root: Path) -> None:
    """The same hard link as a mount source would put the outside file into a sandbox,
    writable if the mount is. Control: a directory (its link count is its subdirectories')
    and a file with one name are mount sources."""
    os.link(root.parent / "outside" / "secret", root / "job" / "linked")
    with pytest.raises(SandboxError, match="hard link"):
        hostfs.verified_path(str(root), f"{root}/job/linked")
    (root / "job" / "own").write_text("mine")
    (root / "job" / "sub").mkdir()
    assert hostfs.verified_path(str(root), f"{root}/job/own").endswith("/job/own")
    assert hostfs.verified_path(str(root), f"{root}/job").endswith("/job")
