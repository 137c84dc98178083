"""plugins/module_utils/sandbox/limits.py: a sandbox's cgroup counters, read from a /proc and a
cgroup tree laid out as the kernel lays them (v1 and v2); the counters firing for real under
runsc are tests/security/test_exhaustion.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.limits import (
    Watch,
    cgroup_dirs,
    fired,
)

CID = "f8a7b97297217b15ca4744905d5d16b3979d9b960dfe3575b1f06cc83238479e"
V1 = f"""13:perf_event:/
8:pids:/docker/outer/docker/{CID}
4:memory:/docker/outer/docker/{CID}
0::/docker/outer
"""
V2 = f"0::/system.slice/docker-{CID}.scope\n"


def counters(container_id: str, proc: str, root: str) -> dict[str, int]:
    """What a Watch reads when it opens ({} where no counter is readable)."""
    watch = Watch(container_id, proc, root)
    watch.close()
    return watch.before


def machine(tmp_path: Path, cgroup: str, files: dict[str, str]) -> tuple[str, str]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cmdline").write_bytes(b"runsc-sandbox\0--root\0/run\0boot\0" + CID.encode())
    (proc / "4242" / "cgroup").write_text(cgroup)
    (proc / "77").mkdir()
    (proc / "77" / "cmdline").write_bytes(b"sleep\0" + CID.encode())  # not a sandbox
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return str(proc), str(root)


def test_v1_counters_come_from_each_controllers_hierarchy(tmp_path) -> None:
    proc, root = machine(tmp_path, V1, {
        f"pids/docker/outer/docker/{CID}/pids.events": "max 17\n",
        f"memory/docker/outer/docker/{CID}/memory.oom_control": "oom_kill_disable 0\noom_kill 2\n",
    })  # fmt: skip
    assert counters(CID, proc, root) == {"pids": 17, "memory": 2}


def test_v2_counters_come_from_the_unified_tree(tmp_path) -> None:
    scope = f"system.slice/docker-{CID}.scope"
    proc, root = machine(tmp_path, V2, {
        f"{scope}/pids.events": "max 3\n", f"{scope}/memory.events": "low 0\noom_kill 1\n",
    })  # fmt: skip
    assert counters(CID, proc, root) == {"pids": 3, "memory": 1}


@pytest.mark.parametrize(
    "cgroup",
    [
        "0::/\n",  # the root: the whole machine's counters, never a sandbox's
        "0::/../../etc\n",
        "8:pids:/../../../etc\n4:memory:/\n",
        "garbage\n::\n",
        "",
    ],
)
def test_a_path_at_or_outside_the_root_is_not_read(tmp_path, cgroup) -> None:
    proc, root = machine(
        tmp_path, cgroup, {"pids.events": "max 9\n", "memory.events": "oom_kill 9\n"}
    )
    assert cgroup_dirs(4242, proc, root) == {}
    assert counters(CID, proc, root) == {}


def test_a_gone_sandbox_has_no_counters(tmp_path) -> None:
    proc, root = machine(tmp_path, V1, {})
    assert counters(CID, proc, root) == {}
    assert counters("0" * 64, proc, root) == {}


def test_what_fired_is_what_rose_or_what_docker_recorded() -> None:
    assert fired({"pids": 2, "memory": 0}, {"pids": 5, "memory": 0}, False) == ["pids"]
    assert fired({"pids": 2}, {"pids": 2}, False) == []
    assert fired({"pids": 0, "memory": 0}, {}, True) == ["memory"]  # killed, cgroup gone
    assert fired({}, {"pids": 1, "memory": 1}, False) == ["memory", "pids"]


def test_a_planted_line_or_a_cgroup_not_the_sandboxs_is_not_read(tmp_path) -> None:
    """Review findings: a cgroup name may hold \r (not \n), which splitlines() read as a
    second line naming another cgroup; a runsc-sandbox process planted by root in an outer,
    or a sandbox without cgroups of its own (userns mode), sits in a cgroup that is not the
    container's; a counter of non-ASCII digits."""
    planted = (
        f"8:pids:/docker/evil\r8:pids:/docker\n4:memory:/docker/outer\n0::/docker/{CID}\u00b2\n"
    )
    proc, root = machine(tmp_path, planted, {
        "pids/docker/pids.events": "max 5\n",
        "memory/docker/outer/memory.oom_control": "oom_kill 5\n",
    })  # fmt: skip
    assert counters(CID, proc, root) == {}
    proc2, root2 = machine(tmp_path / "2", V1, {
        f"pids/docker/outer/docker/{CID}/pids.events": "max \u00b2\n",
        f"memory/docker/outer/docker/{CID}/memory.oom_control": "oom_kill 1\n",
    })  # fmt: skip
    assert counters(CID, proc2, root2) == {"memory": 1}
