"""Leak check logic without Docker: diffs, snapshot files, the mountinfo parser."""

from __future__ import annotations

import subprocess
import sys
import time
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


def test_qemu_of_a_concurrent_stages_lab_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test` runs the VM tests (labs pytest-vm*, molecule-vm) beside the other stages:
    their QEMU is not a leak of those stages; a QEMU of any other lab still is (names match
    by prefix)."""
    monkeypatch.delenv("FORTRESS_CONCURRENT_LABS", raising=False)
    sleeper = f'{sys.executable} -c "import time; time.sleep(60)"'
    fakes = [  # real processes whose argv looks like a lab's QEMU
        subprocess.Popen(["bash", "-c", f"exec -a qemu-system-fake {sleeper} -name {lab}/h"])
        for lab in ("unit-concurrent-x", "unit-own")
    ]
    try:
        wanted = ("-name unit-concurrent-x/h", "-name unit-own/h")
        deadline = time.monotonic() + 10  # real VMs of another lane may run meanwhile
        seen = ""
        while not all(w in seen for w in wanted) and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = " ".join(probe.qemu_processes())
        assert all(w in seen for w in wanted), seen
        monkeypatch.setenv("FORTRESS_CONCURRENT_LABS", "other,unit-concurrent")
        seen = " ".join(probe.qemu_processes())
        assert "unit-concurrent-x/" not in seen and "-name unit-own/h" in seen
    finally:
        for proc in fakes:
            proc.kill()
            proc.wait()
