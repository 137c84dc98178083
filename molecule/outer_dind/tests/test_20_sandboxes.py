"""Sandboxes started through an outer container's host-side socket: in gVisor, nested in the
outer's cgroup, unable to reach the inner daemon, and bounded by the outer's memory."""

from __future__ import annotations

import contextlib
import json

import pytest
from conftest import PLATFORM, inner, inspect

# The dind host; test_50_userns.py covers the userns one.
testinfra_hosts = [f"ansible://{PLATFORM}"]


@contextlib.contextmanager
def sandbox(host, tenant: str, *args: str):
    """A sandbox in the tenant's inner daemon (docker CLI on the lab host), always removed."""
    cid = host.check_output(f"{inner(tenant)} run -d {' '.join(args)}")
    try:
        yield cid
    finally:
        host.run(f"{inner(tenant)} rm -f {cid}")


def memory_cgroup(host, pid: int) -> str:
    lines = host.file(f"/proc/{pid}/cgroup").content_string.splitlines()
    mine = [line.split(":", 2)[2] for line in lines if ":memory:" in line or line.startswith("0::")]
    return mine[0]


def runsc_sandbox_pid(host, cid: str) -> int:
    procs = host.check_output("pgrep -af ^runsc-sandbox").splitlines()
    mine = [p for p in procs if cid in p]
    assert len(mine) == 1, f"no runsc-sandbox process carries {cid}: {procs}"
    return int(mine[0].split()[0])


@pytest.mark.leak_check(target=PLATFORM, settle=5)
def test_sandbox_runs_in_gvisor_nested_in_the_outer_cgroup(host, leak_check) -> None:
    outer = inspect(host, "tenant-a")
    with sandbox(host, "tenant-a", "--network none fortress/smoke:busybox sleep 60") as cid:
        runtime = host.check_output(
            f"{inner('tenant-a')} inspect -f '{{{{.HostConfig.Runtime}}}}' {cid}"
        )
        assert runtime == "runsc"
        pid = runsc_sandbox_pid(host, cid)  # seen from the lab host, through two pid namespaces
        # gVisor's kernel answers inside, not the lab host's.
        inside = host.check_output(f"{inner('tenant-a')} exec {cid} uname -r")
        assert inside != host.check_output("uname -r")
        # The sandbox's cgroup lies below the outer container's: its limits bound the sandbox.
        outer_cg = memory_cgroup(host, outer["State"]["Pid"])
        assert memory_cgroup(host, pid).startswith(outer_cg.rstrip("/") + "/"), (outer_cg, pid)


def test_inner_socket_is_not_reachable_from_a_sandbox(host) -> None:
    probe = (
        "find / -type s 2>/dev/null; echo mounts=$(grep -c fortress /proc/mounts);"
        " ls /run/fortress /var/run/docker.sock 2>&1; true"
    )
    out = host.check_output(
        f"{inner('tenant-a')} run --rm --network none fortress/smoke:busybox sh -c '{probe}'"
    )
    lines = out.splitlines()
    # No unix socket anywhere in the sandbox's filesystem, nothing of the outer mounted.
    assert "mounts=0" in lines, out
    assert [line for line in lines if "docker.sock" in line and "No such file" not in line] == []
    assert any("/run/fortress" in line and "No such file" in line for line in lines), out


def test_two_sandboxes_over_the_outer_memory_are_stopped_inside_it(host) -> None:
    """tenant-b has 768 MiB. Two sandboxes, each allowed 700 MiB and filling 450 MiB of tmpfs
    (gVisor keeps it in memory), together pass 768 MiB: the outer's limit must stop them,
    while the outer, its dockerd, the other tenant and the lab host carry on."""
    outer = inspect(host, "tenant-b")
    cg = "/sys/fs/cgroup/memory" + memory_cgroup(host, outer["State"]["Pid"])
    host.check_output(f"echo 0 > {cg}/memory.max_usage_in_bytes")
    limit = int(host.file(f"{cg}/memory.limit_in_bytes").content_string)
    fill = "dd if=/dev/zero of=/fill/x bs=1M count=450 && echo filled && sleep 20"
    limits = "--network none --memory 700m --tmpfs /fill:size=700m"
    hog = f"{limits} fortress/smoke:busybox sh -c '{fill}'"
    with sandbox(host, "tenant-b", hog) as one, sandbox(host, "tenant-b", hog) as two:
        states = []
        for cid in (one, two):
            host.run(f"timeout 60 {inner('tenant-b')} wait {cid}")
            state = host.check_output(f"{inner('tenant-b')} inspect -f '{{{{json .State}}}}' {cid}")
            states.append(json.loads(state))
    assert any(s["OOMKilled"] for s in states), states
    peak = int(host.file(f"{cg}/memory.max_usage_in_bytes").content_string)
    # The peak reached the limit and stayed at it (the kernel may overshoot by a few pages).
    assert limit == 768 << 20 and 0.9 * limit < peak <= limit + (1 << 20), (peak, limit)
    # Stopped inside: the outer and its daemon are still up, the other tenant and the lab host too.
    assert inspect(host, "tenant-b")["State"]["Running"] is True
    assert host.run(f"{inner('tenant-b')} info").rc == 0
    assert host.run(f"{inner('tenant-a')} info").rc == 0
    assert host.run("docker info").rc == 0


TOO_MANY_CPUS = """
import sys
sys.path.insert(0, "/usr/local/lib/fortress")
from sandbox import Sandboxes, SandboxSpec, SandboxError
boxes = Sandboxes(socket_path="/run/fortress/outer/tenant-b/docker.sock", audit_log=None)
try:
    boxes.task(SandboxSpec(image="fortress/smoke:busybox", owner="t", cpus=1.0), ["true"])
except SandboxError as exc:
    print(exc)
"""


@pytest.mark.leak_check(target=PLATFORM, settle=5)
def test_a_sandbox_asking_more_cpu_than_its_outer_gets_one_clear_sentence(host, leak_check):
    """tenant-b has 0.5 CPU; its cgroup caps its sandboxes', so 1 CPU cannot be granted."""
    out = host.check_output(f"python3 -c '{TOO_MANY_CPUS}'")
    assert "asks for 1.0 CPUs" in out and "lower cpus to at most the outer's cpus" in out, out
    assert host.check_output(f"{inner('tenant-b')} ps -aq") == ""
