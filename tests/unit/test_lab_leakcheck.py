"""Leak check logic without Docker: diffs, snapshot files, the mountinfo parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from fortress_lab import leakcheck, probe


def _snap(**items: set[str]) -> leakcheck.Snapshot:
    return leakcheck.Snapshot(
        None, **{k: frozenset(items.get(k, set())) for k in leakcheck.CATEGORIES}
    )


def test_diff_lists_only_added_items() -> None:
    before = _snap(containers={"a", "b"}, mounts={"/"})
    after = _snap(containers={"b", "c"}, mounts={"/"}, veths={"veth1"})
    assert leakcheck.diff(before, after) == {"containers": {"c"}, "veths": {"veth1"}}
    assert leakcheck.diff(after, after) == {}


def test_snapshot_json_round_trip() -> None:
    snap = _snap(runsc={"12 /usr/bin/runsc-sandbox"}, cgroups={"/sys/fs/cgroup/pids/docker/x"})
    assert leakcheck.Snapshot.from_json(snap.to_json()) == snap


def test_no_leaks_raises_with_a_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    states = iter([_snap(), _snap(volumes={"v1"}, veths={"veth9"})])
    monkeypatch.setattr(leakcheck, "snapshot", lambda target=None: next(states))
    with pytest.raises(AssertionError, match=r"(?s)on this machine.*volumes: v1") as info:
        with leakcheck.no_leaks(ignore={"veths"}, settle=0):
            pass
    assert "veth9" not in str(info.value)


def test_unknown_ignore_category_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown leak categories"):
        leakcheck.leaks_since(_snap(), ignore={"vethz"})


def test_mount_points_decode_escapes(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "30 22 0:25 / /mnt/with\\040space rw - tmpfs tmpfs rw\n"
    )
    assert probe.mount_points(str(info)) == ["/", "/mnt/with space"]


def test_probe_runs_without_third_party_packages() -> None:
    state = probe.system_state()
    assert set(state) == {"mounts", "runsc", "qemu", "veths", "cgroups"}
    assert "/" in state["mounts"]
