"""The fortress.agents.sandbox* modules against real dockerds with runsc.

One Debian 12 lab host converged by site.yml (host layer and outer layer). Each lifecycle
test runs twice: against the lab host's own dockerd, and against its outer container's
inner dockerd through the host-side socket (the double sandbox). The modules are driven
through ansible-playbook; every step is wrapped in a leak check inside the lab host
(containers, volumes and networks of both daemons, mounts also inside the outer, runsc
processes, veths, cgroups).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fortress_lab import leakcheck
from fortress_lab.common import client
from fortress_lab.playbook import run_module, run_playbook
from fortress_lab.pytest_plugin import reaper_paused

HOST = "fortress-pytest-sandbox-1"  # tests/conftest.py: sandbox_lab
IMAGE = "fortress/smoke:busybox"
FOREVER = ["/bin/sh", "-c", "sleep 2147483647"]
STOPPABLE = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"]  # stops at once
OUTER_SOCKET = "/run/fortress/outer/default/docker.sock"
DAEMONS = {"host": None, "outer": OUTER_SOCKET}


@pytest.fixture(params=list(DAEMONS))
def daemon(request: pytest.FixtureRequest) -> dict[str, str]:
    """Module arguments that select the daemon under test (none: the host's own)."""
    sock = DAEMONS[request.param]
    return {"docker_socket": sock} if sock else {}


def docker_cli(daemon: dict[str, str]) -> str:
    sock = daemon.get("docker_socket")
    return f"docker -H unix://{sock}" if sock else "docker"


@pytest.fixture(scope="module")
def inventory(sandbox_lab: Path) -> Path:
    return sandbox_lab


def module(inventory: Path, name: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Run one fortress.agents module on the lab host and return its result."""
    return run_module(inventory, HOST, name, args, **kw)


def host_sh(command: str) -> str:
    done = client().containers.get(HOST).exec_run(["sh", "-c", command])
    return done.output.decode()


@pytest.fixture
def no_leaks_in_host(inventory: Path) -> Iterator[None]:
    with leakcheck.no_leaks(target=HOST, settle=20):
        yield


def test_create_is_idempotent_and_check_mode_shows_the_diff(
    inventory, daemon, no_leaks_in_host
) -> None:
    spec = {"name": "s1", "image": IMAGE, "command": FOREVER, "owner": "t", **daemon}
    try:
        first = module(inventory, "sandbox", spec)
        assert first["changed"] and first["sandbox"]["runtime"] == "runsc", first
        again = module(inventory, "sandbox", spec)
        assert not again["changed"], again
        check = module(inventory, "sandbox", {**spec, "memory": "256m"}, check=True, diff=True)
        assert (
            check["changed"]
            and check["diff"]["before"]["fingerprint"] != check["diff"]["after"]["fingerprint"]
        )
        still = module(inventory, "sandbox", spec)
        assert not still["changed"], "check mode changed the sandbox"
        changed = module(inventory, "sandbox", {**spec, "memory": "256m"})
        assert changed["changed"] and changed["sandbox"]["id"] != first["sandbox"]["id"]
    finally:
        module(inventory, "sandbox", {"name": "s1", "state": "absent", **daemon})


def test_exec_timeout_kills_inside_the_sandbox(inventory, daemon, no_leaks_in_host) -> None:
    module(inventory, "sandbox", {"name": "s2", "image": IMAGE, "command": FOREVER, **daemon})
    try:
        out = module(
            inventory,
            "sandbox_exec",
            {"name": "s2", "cmd": "sleep 4242 & sleep 4243", "timeout": 2, **daemon},
        )
        assert out["failed"] and out["timed_out"] and out["rc"] is None, out
        ps = module(
            inventory, "sandbox_exec", {"name": "s2", "argv": ["ps", "-o", "stat,args"], **daemon}
        )
        live = [
            line
            for line in ps["stdout"].splitlines()
            if "sleep 424" in line and not line.startswith("Z")
        ]
        assert live == [], ps["stdout"]
    finally:
        module(inventory, "sandbox", {"name": "s2", "state": "absent", **daemon})


def test_stdin_output_cap_stop_start_and_a_digest_pinned_image(
    inventory, daemon, no_leaks_in_host
) -> None:
    """The paths users rely on that no other test walks: stdin reaches the command, output
    is cut at max_output and says so, stopped and started are transitions (changed once,
    then not), and an image named by its content digest is the image run."""
    digest = host_sh(f"{docker_cli(daemon)} image inspect -f '{{{{.Id}}}}' {IMAGE}").strip()
    assert digest.startswith("sha256:"), digest
    made = module(inventory, "sandbox", {"name": "s5", "image": digest, "command": STOPPABLE,
                                         **daemon})  # fmt: skip
    try:
        assert made["changed"] and made["sandbox"]["status"] == "running", made
        fed = module(inventory, "sandbox_exec", {"name": "s5", "cmd": "tr a-z A-Z; echo -n /end",
                                                 "stdin": "fed\nin\n", **daemon})  # fmt: skip
        # (stdin is no_log: Ansible would mask an output that repeats it verbatim)
        assert fed["stdout"] == "FED\nIN\n/end" and not fed["truncated"], fed
        cut = module(inventory, "sandbox_exec", {
            "name": "s5", "cmd": "head -c 5000 /dev/zero | tr '\\0' x", "max_output": 1000,
            **daemon,
        })  # fmt: skip
        assert cut["truncated"] and cut["stdout"] == "x" * 1000, cut
        for state, status, changed in (
            ("stopped", "exited", True),
            ("stopped", "exited", False),
            ("started", "running", True),
            ("started", "running", False),
        ):
            step = module(inventory, "sandbox", {"name": "s5", "state": state, "image": digest,
                                                 "command": STOPPABLE, **daemon})  # fmt: skip
            assert (step["changed"], step["sandbox"]["status"]) == (changed, status), step
        again = module(inventory, "sandbox_exec", {"name": "s5", "cmd": "echo back", **daemon})
        assert again["stdout"] == "back\n", again
        listed = module(inventory, "sandbox_info", {**daemon})["sandboxes"]
        assert [s["image"] for s in listed if s["name"] == "s5"] == [digest]
        wrong = "sha256:" + "0" * 64
        missing = module(inventory, "sandbox", {"name": "s6", "image": wrong, **daemon})
        assert missing["failed"] and f"image {wrong} is not on this daemon" in missing["msg"]
    finally:
        module(inventory, "sandbox", {"name": "s5", "state": "absent", **daemon})


def test_one_shot_runs_in_gvisor_out_of_sight_of_the_host(
    inventory, daemon, no_leaks_in_host
) -> None:
    nonce = "31337"
    out = module(inventory, "sandbox_exec", {
        "image": IMAGE, "cmd": f"sleep {nonce} & ps -o args; uname -r; kill $!", **daemon,
    })  # fmt: skip
    assert out["rc"] == 0 and not out["escaped"] and f"sleep {nonce}" in out["stdout"], out
    assert out["stdout"].strip().splitlines()[-1] != host_sh("uname -r").strip()
    assert f"sleep {nonce}" not in host_sh("ps -eo args")  # it ran in gVisor's Sentry
    # Control: the same process in a runc container shows in the host's process list.
    cid = host_sh(f"docker run -d --rm {IMAGE} sleep {nonce}").strip()
    try:
        assert f"sleep {nonce}" in host_sh("ps -eo args")
    finally:
        host_sh(f"docker rm -f {cid}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"runtime": "runc"}, "not a runsc runtime"),
        ({"image": "fortress/absent:1"}, "is not on this daemon"),
        ({"memory": "lots"}, "memory must be a size"),
        ({"network": "internet"}, "egress policy 'internet' is not available on this daemon"),
        ({"mounts": [{"source": "/etc", "target": "/workspace"}]}, "outside the workspace root"),
        ({"docker_socket": "/var/run/docker.sock"}, "through a symlink"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_nothing(
    inventory, daemon, no_leaks_in_host, args, message
):
    spec = {"name": "bad", "image": IMAGE, "command": FOREVER, **daemon, **args}
    out = module(inventory, "sandbox", spec)
    assert out["failed"] and message in out["msg"], out


# The least each module takes (none of them reaches a daemon through a refused socket).
EVERY_MODULE = {
    "sandbox": {"name": "bad", "state": "absent"},
    "sandbox_copy": {"name": "bad", "content": "x", "dest": "/workspace/x"},
    "sandbox_exec": {"image": IMAGE, "argv": ["true"]},
    "sandbox_info": {},
    "sandbox_reap": {},
}


def test_module_defaults_of_the_group_reach_every_sandbox_module(inventory, tmp_path) -> None:
    """`module_defaults: group/fortress.agents.sandbox` (meta/runtime.yml's action group)
    sets an option of every sandbox module: here a socket path through a symlink, which each
    refuses; the same tasks without the defaults are not refused for it (control). The
    play runs in check mode, sandbox_exec's task not (it has none)."""
    tasks = [
        {"name": name, f"fortress.agents.{name}": args, "ignore_errors": True,
         # sandbox_exec has no check mode: without the defaults, a one-shot `true`.
         **({"check_mode": False} if name == "sandbox_exec" else {})}
        for name, args in EVERY_MODULE.items()
    ]  # fmt: skip
    defaults = {"group/fortress.agents.sandbox": {"docker_socket": "/var/run/docker.sock"}}
    for with_defaults in (True, False):
        play = tmp_path / f"play-{with_defaults}.yml"
        doc = {"hosts": HOST, "gather_facts": False, "tasks": tasks}
        if with_defaults:
            doc["module_defaults"] = defaults
        play.write_text(json.dumps([doc]))
        run = run_playbook(inventory, playbook=play, check=True)
        for name in EVERY_MODULE:
            result = run.results[name][HOST]
            refused = "through a symlink" in str(result.get("msg", ""))
            assert refused is with_defaults, (name, with_defaults, result)


def test_reap_removes_only_expired_fortress_sandboxes(inventory, daemon, no_leaks_in_host) -> None:
    with reaper_paused(host_sh):  # the host's own reaper would race this one for "old"
        reap_only_expired(inventory, daemon)


def reap_only_expired(inventory: Path, daemon: dict[str, str]) -> None:
    docker = docker_cli(daemon)
    module(
        inventory,
        "sandbox",
        {"name": "old", "image": IMAGE, "command": FOREVER, "ttl": 1, **daemon},
    )
    module(
        inventory,
        "sandbox",
        {"name": "young", "image": IMAGE, "command": FOREVER, "ttl": 3600, **daemon},
    )
    host_sh(f"{docker} run -d --name not-ours {IMAGE} sleep 600")
    try:
        host_sh("sleep 2")
        would = module(inventory, "sandbox_reap", {**daemon}, check=True)
        assert would["reaped"] == ["old"]
        info = module(inventory, "sandbox_info", {**daemon})
        assert {s["name"]: s["expired"] for s in info["sandboxes"]} == {"old": True, "young": False}
        reaped = module(inventory, "sandbox_reap", {**daemon})
        assert reaped["reaped"] == ["old"]
        names = host_sh(f"{docker} ps -a --format '{{{{.Names}}}}'").split()
        assert "young" in names and "not-ours" in names and "old" not in names
    finally:
        module(inventory, "sandbox", {"name": "young", "state": "absent", **daemon})
        host_sh(f"{docker} rm -f not-ours")


PARALLEL = """
import sys, concurrent.futures
sys.path.insert(0, "/usr/local/lib/fortress")
from sandbox import Sandboxes, SandboxSpec
boxes = Sandboxes(socket_path=sys.argv[1])
def one(i):
    try:
        r = boxes.task(SandboxSpec(image="fortress/smoke:busybox", owner="par"), ["echo", str(i)])
    except Exception as exc:
        return f"task {i}: {type(exc).__name__}: {exc}"
    if r.rc == 0 and r.stdout.strip() == str(i):
        return ""
    return f"task {i}: {r!r}"
with concurrent.futures.ThreadPoolExecutor(20) as pool:
    failed = [why for why in pool.map(one, range(20)) if why]
print("\\n".join(failed) or "all 20")
"""


def test_twenty_parallel_one_shots_all_succeed_and_leave_nothing(
    inventory, daemon, no_leaks_in_host
):
    sock = daemon.get("docker_socket", "/run/docker.sock")
    done = client().containers.get(HOST).exec_run(["python3", "-c", PARALLEL, sock])
    assert done.exit_code == 0 and done.output.decode().strip() == "all 20", done.output.decode()


def test_a_dead_daemon_gets_one_clear_sentence(inventory, no_leaks_in_host) -> None:
    # A root-owned socket nobody answers on: what a crashed daemon leaves behind.
    host_sh("python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('/run/dead.sock')\"")
    try:
        out = module(inventory, "sandbox_info", {"docker_socket": "/run/dead.sock"})
        assert out["failed"] and "does not answer" in out["msg"], out
    finally:
        host_sh("rm -f /run/dead.sock")


WS = "/var/lib/fortress/workspaces/copytest"


def test_files_stream_in_and_out_under_runsc_and_traversal_is_refused(
    inventory, daemon, no_leaks_in_host
) -> None:
    host_sh(f"mkdir -p {WS} && head -c 3000 /dev/urandom > {WS}/in.bin")
    module(inventory, "sandbox", {"name": "s3", "image": IMAGE, "command": FOREVER, **daemon})
    try:
        # In: a binary file from the workspace, then a secret as content onto the /tmp tmpfs.
        args = {"name": "s3", "src": f"{WS}/in.bin", "dest": "/tmp/in.bin", **daemon}
        first = module(inventory, "sandbox_copy", args)
        host_sum = host_sh(f"sha256sum {WS}/in.bin").split()[0]
        assert first["changed"] and first["sha256"] == host_sum, first
        inside = module(inventory, "sandbox_exec", {"name": "s3", "cmd": "sha256sum /tmp/in.bin",
                                                    **daemon})  # fmt: skip
        assert inside["stdout"].split()[0] == host_sum
        assert not module(inventory, "sandbox_copy", args)["changed"]  # idempotent
        secret = {"name": "s3", "content": "s3cr3t-token", "dest": "/tmp/token", "mode": "0400"}
        check = module(inventory, "sandbox_copy", {**secret, **daemon}, check=True)
        assert check["changed"]
        assert module(inventory, "sandbox_copy", {**secret, **daemon})["changed"]
        mode = module(inventory, "sandbox_exec", {"name": "s3", "cmd": "stat -c %a /tmp/token",
                                                  **daemon})  # fmt: skip
        assert mode["stdout"].strip() == "400"
        # Out: a file the sandbox wrote (it lives in gVisor's memory overlay, not on the host).
        module(inventory, "sandbox_exec", {
            "name": "s3", "cmd": "head -c 2000 /dev/urandom > /tmp/out.bin", **daemon,
        })  # fmt: skip
        want = module(inventory, "sandbox_exec", {"name": "s3", "cmd": "sha256sum /tmp/out.bin",
                                                  **daemon})["stdout"].split()[0]  # fmt: skip
        out = module(inventory, "sandbox_copy", {
            "name": "s3", "direction": "out", "src": "/tmp/out.bin", "dest": f"{WS}/out.bin",
            **daemon,
        })  # fmt: skip
        assert out["changed"] and out["sha256"] == want
        assert host_sh(f"sha256sum {WS}/out.bin").split()[0] == want
        if not daemon:  # the host daemon's layer for this container has no trace of it
            upper = host_sh("docker inspect -f '{{.GraphDriver.Data.UpperDir}}' s3").strip()
            assert host_sh(f"find {upper} -name out.bin") == ""
        # Refused, each in one sentence: traversal in the sandbox, host paths outside.
        for bad, message in [
            ({"content": "x", "dest": "/tmp/../etc/passwd"}, "must not contain '..'"),
            ({"src": "/etc/shadow", "dest": "/tmp/shadow"}, "outside the workspace root"),
            ({"direction": "out", "src": "/etc/hostname", "dest": "/root/stolen"},
             "outside the workspace root"),
        ]:  # fmt: skip
            refused = module(inventory, "sandbox_copy", {"name": "s3", **bad, **daemon})
            assert refused["failed"] and message in refused["msg"], refused
    finally:
        module(inventory, "sandbox", {"name": "s3", "state": "absent", **daemon})
        host_sh(f"rm -rf {WS}")


def test_a_name_taken_by_another_container_and_a_one_shot_timeout_leave_nothing(
    inventory, daemon, no_leaks_in_host
) -> None:
    docker = docker_cli(daemon)
    host_sh(f"{docker} run -d --name taken {IMAGE} sleep 600")
    try:
        out = module(inventory, "sandbox", {"name": "taken", "image": IMAGE, **daemon})
        assert out["failed"] and "was not created by Fortress: pick another name" in out["msg"]
    finally:
        host_sh(f"{docker} rm -f taken")
    # A one-shot that times out is killed and its sandbox destroyed all the same.
    timed_out = module(inventory, "sandbox_exec", {
        "image": IMAGE, "cmd": "sleep 600", "timeout": 2, "owner": "timeout-test", **daemon,
    })  # fmt: skip
    assert timed_out["failed"] and timed_out["timed_out"], timed_out
    left = module(inventory, "sandbox_info", {"owner": "timeout-test", **daemon})
    assert left["sandboxes"] == []


# Under load, runsc can fail to start an exec (its sandbox answers late); Docker then says
# "OCI runtime exec failed" with exit code 126 and no process. A runsc that fails the next
# N execs that way, in front of the real one (the sandbox itself stays real gVisor).
FLAKY_RUNSC = """#!/bin/sh
for a in "$@"; do
  if [ "$a" = exec ] && [ -s /run/fortress-flaky-execs ]; then
    n=$(cat /run/fortress-flaky-execs); echo $((n - 1)) > /run/fortress-flaky-execs
    if [ "$n" -gt 0 ]; then echo "FATAL ERROR: the test's flaky runsc" >&2; exit 128; fi
  fi
done
exec /usr/bin/runsc.real "$@"
"""


def test_an_exec_the_runtime_fails_to_start_is_tried_again_and_never_run_twice(
    inventory, no_leaks_in_host
) -> None:
    audit = "/var/log/fortress/sandbox-audit.log"
    module(inventory, "sandbox", {"name": "flaky", "image": IMAGE, "command": FOREVER})
    host_sh("mv /usr/bin/runsc /usr/bin/runsc.real")  # running sandboxes keep its inode
    try:
        host_sh(f"cat > /usr/bin/runsc <<'EOF'\n{FLAKY_RUNSC}EOF\nchmod 755 /usr/bin/runsc")
        before = int(host_sh(f"grep -c exec-not-started {audit} || true") or 0)
        host_sh("echo 2 > /run/fortress-flaky-execs")
        ran = module(inventory, "sandbox_exec", {
            "name": "flaky", "cmd": "echo x >> /tmp/runs; echo ok",
        })  # fmt: skip
        assert ran["rc"] == 0 and ran["stdout"].strip() == "ok", ran
        assert int(host_sh(f"grep -c exec-not-started {audit}")) == before + 2
        host_sh("echo 3 > /run/fortress-flaky-execs")
        refused = module(inventory, "sandbox_exec", {
            "name": "flaky", "cmd": "echo x >> /tmp/runs",
        })  # fmt: skip
        assert refused["failed"] and "the runtime could not start the command" in refused["msg"]
        assert "OCI runtime exec failed" in refused["msg"], refused["msg"]
        host_sh("rm -f /run/fortress-flaky-execs")
        runs = module(inventory, "sandbox_exec", {"name": "flaky", "argv": ["cat", "/tmp/runs"]})
        assert runs["stdout"] == "x\n", "a command that started was run again"
    finally:
        host_sh("mv /usr/bin/runsc.real /usr/bin/runsc; rm -f /run/fortress-flaky-execs")
        module(inventory, "sandbox", {"name": "flaky", "state": "absent"})
