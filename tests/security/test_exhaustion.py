"""Resource exhaustion inside the double sandbox (docs/threat-model.md, resource exhaustion).

Each bomb runs in a sandbox made by the lifecycle library through the outer's socket, with
limits of its own, next to a sibling sandbox. A test passes when the limit demonstrably fired
(the kernel's counter for the sandbox's cgroup, read from this machine, or the error the
agent got), the caller's exec result names the limit that fired (`limits_hit`), and the
sibling and the lab host stayed responsive (their exec latency, sampled while the bomb runs,
stays under a bound). What happened, with every latency sample, is printed and kept in the
test report as JUnit properties (`record_property`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fortress_lab import adversary as adv
from fortress_lab import leakcheck

HOST = "fortress-pytest-sandbox-1"  # tests/conftest.py: sandbox_lab
BOUND = 3.0  # seconds: a sibling's `true` or a lab host's exec slower than this is a failure


@pytest.fixture(scope="module")
def host(sandbox_lab: Path) -> Iterator[adv.LabHost]:
    """The lab host; the bombs must leave nothing behind in it."""
    with leakcheck.no_leaks(target=HOST, settle=20):
        yield adv.LabHost(HOST)


@pytest.fixture(scope="module")
def sibling(host: adv.LabHost) -> Iterator[tuple[Any, str]]:
    with adv.sandboxed(host) as (boxes, name):
        print(f"sibling baseline exec latency {adv.exec_latency(boxes, name, 5):.3f}s")
        yield boxes, name


def bomb(
    host, sibling, limits: dict[str, Any], script: str, counter: tuple[str, ...], record=None,
    foreground: bool = True,
) -> dict:  # fmt: skip
    """Run script in a fresh sandbox with limits (in the foreground: the exec's result names
    the limit that fired; a script that never ends runs in the background), with the counter
    (controller, file, key[, v2 file]) of its cgroup sampled every few milliseconds from a
    thread (a sandbox killed by its limit takes its cgroup with it); meanwhile sample the
    sibling's and the lab host's latency; then the sandbox's state. The samples and what was
    seen go into the test report (JUnit properties) through record."""
    controller, file, key, *v2 = counter
    with adv.sandboxed(host, **limits) as (boxes, name):
        container = boxes.client.containers.get(name)
        path = adv.cgroup_file(container.id, controller, file)
        path = path or (adv.cgroup_file(container.id, controller, v2[0]) if v2 else None)
        assert path, f"no {controller} cgroup of the sandbox on this machine"
        fired = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                fired[0] = max(fired[0], adv.read_counters(path).get(key, 0))
                time.sleep(0.002)

        def run() -> None:
            try:
                outcome["result"] = boxes.exec(name, ["/bin/sh", "-c", command], timeout=60)
            except Exception as exc:  # noqa: BLE001 - reported with the evidence
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        outcome: dict[str, Any] = {}
        command = f"({script}) >/dev/null 2>&1" + ("" if foreground else " &")
        sampler, runner = threading.Thread(target=sample), threading.Thread(target=run)
        sampler.start()
        runner.start()
        sibling_samples: list[float] = []
        host_samples: list[float] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sibling_samples.append(round(adv.exec_latency(*sibling, runs=1), 3))
                host_samples.append(round(adv.host_latency(host), 3))
                container.reload()
                if fired[0] or container.status != "running":
                    break
                time.sleep(0.5)
            for _ in range(3):  # and a moment after the limit fired
                sibling_samples.append(round(adv.exec_latency(*sibling, runs=1), 3))
                host_samples.append(round(adv.host_latency(host), 3))
            runner.join(75)
        finally:
            stop.set()
            sampler.join()
        container.reload()
        result = outcome.get("result")
        seen = {
            f"{file}:{key}": fired[0],
            "sandbox": f"{container.status} exit={container.attrs['State']['ExitCode']}",
            "oom_killed": container.attrs["State"]["OOMKilled"],
            "limits_hit": result.limits_hit if result else outcome.get("error", "still running"),
            "rc": result.rc if result else None,
            "sibling_worst_s": max(sibling_samples),
            "host_worst_s": max(host_samples),
        }
    print(seen)
    if record:
        for what, value in {**seen, "sibling_latency_s": sibling_samples,
                            "host_latency_s": host_samples}.items():  # fmt: skip
            record(what, value)
    return seen


def assert_contained(seen: dict) -> None:
    assert seen["sibling_worst_s"] < BOUND, f"the sibling sandbox stalled: {seen}"
    assert seen["host_worst_s"] < BOUND, f"the lab host stalled: {seen}"


def test_fork_bomb_hits_the_pids_limit(host, sibling, record_property) -> None:
    script = "i=0; while [ $i -lt 1000 ]; do sleep 60 & i=$((i+1)); done"
    counter = ("pids", "pids.events", "max")
    seen = bomb(host, sibling, {"pids": 64}, script, counter, record_property)
    assert seen["pids.events:max"] > 0, f"the pids limit never fired: {seen}"
    assert seen["limits_hit"] == ["pids"], f"the caller was not told the pids limit fired: {seen}"
    assert_contained(seen)


def test_memory_bomb_is_oom_killed(host, sibling, record_property) -> None:
    script = "tail -c 400m /dev/zero"  # keeps the last 400 MiB of an endless stream
    counter = ("memory", "memory.oom_control", "oom_kill", "memory.events")
    seen = bomb(host, sibling, {"memory": "128m"}, script, counter, record_property)
    # The kernel's oom_kill counter of the sandbox's cgroup, or Docker's record of it (the
    # cgroup goes away with the killed sandbox, sometimes before the sampler reads it).
    fired = seen["memory.oom_control:oom_kill"] > 0 or seen["oom_killed"]
    assert fired, f"no OOM kill was recorded: {seen}"
    assert "memory" in seen["limits_hit"], f"the caller was not told the memory limit fired: {seen}"
    assert_contained(seen)


def test_cpu_hog_is_throttled(host, sibling, record_property) -> None:
    script = "while :; do :; done & while :; do :; done & wait"  # never ends: in the background
    counter = ("cpu", "cpu.stat", "nr_throttled")
    seen = bomb(host, sibling, {"cpus": 0.5}, script, counter, record_property, foreground=False)
    assert seen["cpu.stat:nr_throttled"] > 0, f"the CPU quota never throttled: {seen}"
    assert_contained(seen)


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("/tmp/fill", "No space left on device"),  # the tmpfs, 64 MiB by default
        ("/dev/shm/fill", "No space left on device"),  # Docker's shm, 64 MiB
        ("/fill", "Read-only file system"),  # the image's root filesystem
    ],
)  # as root, the stronger attacker (nobody cannot write / at all)
def test_filling_a_writable_path_stops_at_its_bound(host, sibling, where, error) -> None:
    """Disk and tmpfs fill: every path a default sandbox can write is bounded in size, or
    read-only; the agent gets ENOSPC or EROFS, and the sibling does not notice."""
    with adv.sandboxed(host, "0:0") as (boxes, name):
        began = time.monotonic()
        result = boxes.exec(
            name, ["dd", "if=/dev/zero", f"of={where}", "bs=1M", "count=256"], timeout=120
        )
        took = time.monotonic() - began
    latency = adv.exec_latency(*sibling)
    print(f"{where}: rc={result.rc} {result.stderr.strip()!r} in {took:.1f}s; sibling {latency}")
    assert result.rc != 0 and error in result.stderr, result
    assert latency < BOUND
