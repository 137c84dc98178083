"""Faults under the lifecycle library, in the double sandbox (docs/threat-model.md).

On the shared lab host: the inner dockerd killed during a task, the outer container
restarted, runsc missing, runsc replaced by a runtime that is not gVisor, runsc removed from
the inner daemon.json. The library must refuse (fail closed) with one clear sentence, never
hand out a sandbox that is not under gVisor, and leave nothing behind; then 200 create /
destroy cycles leave zero leaked containers, processes, mounts, veths or cgroups. Every
fault is undone before its test ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fortress_lab import adversary as adv
from fortress_lab import leakcheck
from fortress_lab.pytest_plugin import reaper_paused

HOST = "fortress-pytest-sandbox-1"  # tests/conftest.py: sandbox_lab
RUNSC = "/usr/bin/runsc"  # in the outer image; the inner daemon.json points at it
DAEMON_JSON = "/etc/fortress/outer/default/daemon.json"  # on the lab host, bound into the outer
NOT_RUNSC = adv.NOT_RUNSC
lib = adv.load_library()


@pytest.fixture(scope="module")
def host(sandbox_lab: Path) -> adv.LabHost:
    return adv.LabHost(HOST)


def spec(**extra: Any) -> Any:
    return lib.SandboxSpec(image=adv.IMAGE, command=lib.KEEP_ALIVE, owner="faults", **extra)


def assert_works_again(boxes: Any) -> None:
    result = boxes.task(spec(), ["echo", "fortress-ok"], timeout=60)
    assert result.stdout.strip() == "fortress-ok", result


def containerd_ids(host: adv.LabHost) -> set[str]:
    """The containers of the inner containerd's Docker namespace."""
    address = "/var/run/docker/containerd/containerd.sock"
    listed = host.outer_exec(["ctr", "--address", address, "-n", "moby", "c", "ls", "-q"])
    return set(listed.split())


def assert_containerd_has_only_what_docker_has(host: adv.LabHost, boxes: Any) -> None:
    """No container left in the inner containerd that Docker forgot (each keeps a shim)."""
    listed = containerd_ids(host)
    known = {c.id for c in boxes.client.containers.list(all=True)}
    assert listed <= known, f"containerd keeps what Docker forgot: {listed - known}"


def test_killing_the_inner_dockerd_during_a_task_fails_clearly(host) -> None:
    boxes = host.sandboxes()
    name = adv.unique("fault-kill")
    boxes.create(spec(name=name))
    killer = threading.Timer(1.5, host.outer_exec, (["pkill", "-KILL", "-x", "dockerd"],))
    killer.start()
    with pytest.raises(lib.SandboxError, match="stopped answering during exec") as refused:
        boxes.exec(name, ["sleep", "30"], timeout=60)
    killer.join()
    print(refused.value)
    boxes = host.wait_outer()  # tini exits with dockerd; unless-stopped brings the outer back
    with pytest.raises(lib.SandboxError, match="is not running") as stopped:
        boxes.exec(name, ["true"])
    print(stopped.value)
    assert boxes.remove(name)
    assert_works_again(boxes)
    assert_containerd_has_only_what_docker_has(host, boxes)


def test_restarting_the_outer_container_stops_its_sandboxes_cleanly(host) -> None:
    boxes = host.sandboxes()
    name = adv.unique("fault-restart")
    boxes.create(spec(name=name))
    boxes = host.restart_outer()
    with pytest.raises(lib.SandboxError, match="is not running"):
        boxes.exec(name, ["true"])
    assert boxes.remove(name)
    assert_works_again(boxes)
    assert_containerd_has_only_what_docker_has(host, boxes)


def test_a_missing_runsc_is_refused(host) -> None:
    boxes = host.sandboxes()
    with host.writable_outer_root():
        host.outer_exec(["mv", RUNSC, f"{RUNSC}.fortress-fault"])
        try:
            with pytest.raises(lib.SandboxError, match=r"Docker refused the sandbox: .*runsc") as e:
                boxes.create(spec(name=adv.unique("fault-missing")))
            print(e.value)
        finally:
            host.outer_exec(["mv", f"{RUNSC}.fortress-fault", RUNSC])
    assert not boxes.list(owner="faults"), "a refused sandbox was left behind"
    assert_works_again(boxes)
    assert_containerd_has_only_what_docker_has(host, boxes)


def test_a_runtime_that_is_not_gvisor_is_refused_and_removed(host) -> None:
    """The daemon still says runsc, but the binary is runc: the host-side check (a
    runsc-sandbox process for the container) must refuse and remove it. Root in the sandbox
    so that runc, without CAP_KILL in the outer, can still stop it."""
    boxes = host.sandboxes()
    moved = f"{RUNSC}.fortress-fault"
    outer = host.docker().containers.get(f"fortress-outer-{host.outer}")
    with host.writable_outer_root():
        host.outer_exec(["cp", "-p", RUNSC, moved])
        try:
            adv.put_text(outer, f"{RUNSC}.fake", NOT_RUNSC)
            host.outer_exec(["sh", "-c", f"chmod 0755 {RUNSC}.fake && mv {RUNSC}.fake {RUNSC}"])
            assert "exec /usr/bin/runc" in host.outer_exec(["cat", RUNSC])
            with pytest.raises(lib.SandboxError, match="did not start under gVisor") as err:
                boxes.create(spec(name=adv.unique("fault-runc"), user="0:0"))
            print(err.value)
            assert "It was removed" in str(err.value)
        finally:
            host.outer_exec(["mv", moved, RUNSC])
    assert not boxes.list(owner="faults"), "the runc sandbox was left behind"
    assert_works_again(boxes)
    assert_containerd_has_only_what_docker_has(host, boxes)


def adapter_publishing(boxes: Any, digests: Path) -> Any:
    """Another adapter on the same daemon, whose published runsc digests are digests."""
    return lib.Sandboxes(
        socket_path=boxes.socket_path, audit_log=None, check=False, fingerprint_key=None,
        runsc_digests=str(digests),
    )  # fmt: skip


def test_a_sandbox_whose_proof_fails_at_start_is_removed(host, tmp_path: Path) -> None:
    """Attack review: a stopped sandbox started again (the sandbox module's state: started)
    whose proof could not be completed (here no published digests to compare with; root in
    an outer can also make the runsc-sandbox process exit once listed) was left running,
    unproven. It is removed, and the refusal says why in one sentence."""
    boxes = host.sandboxes()
    made = boxes.create(spec(name=adv.unique("fault-proof")), start=False)
    with pytest.raises(lib.SandboxError, match="cannot be proven to run in gVisor") as err:
        adapter_publishing(boxes, tmp_path / "absent").start(made)
    print(err.value)
    assert "no runsc digests can be read" in str(err.value) and "It was removed" in str(err.value)
    assert not boxes.list(owner="faults"), "the unproven sandbox was left behind"
    assert_containerd_has_only_what_docker_has(host, boxes)


def test_every_exec_proves_the_runtime_again_and_runs_nothing_unproven(
    host, tmp_path: Path
) -> None:
    """A running sandbox the library cannot prove now (one whose refusal at start its
    runtime would not remove, or whose runtime changed since; here the adapter's published
    digests do not list its runsc) gets no exec: refused in one sentence, nothing run.
    Control: the adapter that publishes its runsc runs the same exec."""
    boxes = host.sandboxes()
    name = adv.unique("fault-reprove")
    boxes.create(spec(name=name))
    try:
        other = tmp_path / "runsc.d"
        other.mkdir()
        (other / "other.sha256").write_text(f"{'0' * 64}  another runsc\n")
        with pytest.raises(lib.SandboxError, match="that no role published") as err:
            adapter_publishing(boxes, other).exec(name, ["sh", "-c", "echo ran > /tmp/ran"])
        print(err.value)
        assert "nothing was run in it" in str(err.value)
        ran = boxes.exec(name, ["sh", "-c", "cat /tmp/ran 2>/dev/null || echo none"])
        assert ran.stdout.strip() == "none", "the command ran in the unproven sandbox"
        control = boxes.exec(name, ["sh", "-c", "echo ran > /tmp/ran && cat /tmp/ran"])
        assert control.stdout.strip() == "ran", control
    finally:
        boxes.remove(name)


def test_runsc_removed_from_the_inner_daemon_json_is_refused(host) -> None:
    original = host.sh(f"cat {DAEMON_JSON}")
    config = json.loads(original)
    config.pop("default-runtime")
    config.pop("runtimes")

    adv.put_text(host.container, DAEMON_JSON, json.dumps(config, indent=2))
    try:
        boxes = host.restart_outer()
        with pytest.raises(lib.SandboxError, match="not a runsc runtime of this daemon") as err:
            boxes.create(spec(name=adv.unique("fault-nojson")))
        print(err.value)
    finally:
        adv.put_text(host.container, DAEMON_JSON, original)
        boxes = host.restart_outer()
    assert json.loads(host.sh(f"cat {DAEMON_JSON}")) == json.loads(original)
    assert_works_again(boxes)


def test_two_hundred_create_destroy_cycles_leave_nothing(host) -> None:
    """After the faults, 200 cycles (4 at a time) through the library: zero containers,
    runsc processes or shims, mounts (also inside the outer), veths or cgroups left."""
    boxes = host.sandboxes()

    def cycle(i: int) -> None:
        name = f"fortress-cycle-{i}"
        boxes.create(spec(name=name))
        assert boxes.remove(name)

    with leakcheck.no_leaks(target=HOST, settle=30):
        began = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(cycle, range(200)))
        print(f"200 cycles in {time.monotonic() - began:.1f}s")
        assert not boxes.list(owner="faults")
    assert_containerd_has_only_what_docker_has(host, boxes)


@pytest.fixture(autouse=True)
def _nothing_of_ours_left(host: adv.LabHost) -> Iterator[None]:
    yield
    leftovers = [c.name for c in host.sandboxes().client.containers.list(all=True)]
    assert not leftovers, f"containers left in the outer: {leftovers}"


def test_a_missing_command_is_refused_and_the_reaper_removes_what_runsc_leaves(host) -> None:
    """The library refuses a sandbox whose command is not in its image in one sentence and
    leaves nothing (its init finds the command before it is told to run it). runsc (2024)
    fails to stop a container whose start failed, so containerd keeps it and its shim after
    Docker forgot it: the host's reaper (sandbox_reaper role, on its timer or started by
    hand) deletes what a plain `docker run` of the same command leaves."""
    boxes = host.sandboxes()
    with pytest.raises(lib.SandboxError, match=r"could not start its command .*nonexistent"):
        boxes.create(lib.SandboxSpec(image=adv.IMAGE, command=["/nonexistent"], owner="faults"))
    assert not boxes.list(owner="faults"), "the refused sandbox was left behind"
    assert_containerd_has_only_what_docker_has(host, boxes)
    with reaper_paused(host.sh):  # so that the leftover is there to be seen first
        inner = f"unix:///run/fortress/outer/{host.outer}/docker.sock"
        host.sh(f"docker -H {inner} run --rm --runtime=runsc {adv.IMAGE} /nonexistent || true")
        stale = containerd_ids(host) - {c.id for c in boxes.client.containers.list(all=True)}
        assert stale, "runsc left nothing behind this time: the reaper's cleanup is untested"
        host.sh("systemctl start fortress-reap.service")
    journal = host.sh("journalctl -u fortress-reap --since -3min --no-pager -o cat")
    print(journal)
    assert all(cid in journal for cid in stale), journal
    assert_containerd_has_only_what_docker_has(host, boxes)
