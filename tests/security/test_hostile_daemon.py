"""A hostile Docker daemon behind the socket, as root in a dind outer can put there (it is
host uid 0 and can replace the outer's socket): every reply the library reads must be
bounded in bytes and in time, and malformed replies must be refused or skipped, never a
traceback that stops the caller (the reaper) from going on. The daemon is
tools/fortress_lab/hostile_daemon.py on a real unix socket; the library is the real one."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from fortress_lab import adversary as adv
from fortress_lab.common import REPO_ROOT
from fortress_lab.hostile_daemon import (
    CONTAINER,
    CONTAINER_ID,
    answered,
    digests_of,
    endless_json,
    frame,
    hostile_daemon,
    init_frame,
    json_reply,
    raw_reply,
    upgraded_with,
)

lib = adv.load_library()
HUGE = 64 * 2**20


def boxes_on(sock: Path) -> Any:
    return lib.Sandboxes(
        socket_path=str(sock), check=False, audit_log=None, fingerprint_key=None,
        runsc_digests=digests_of(sock),
    )  # fmt: skip


def peak_of(call: Callable[[], Any]) -> tuple[int, BaseException | None]:
    """Peak traced memory of call(), and what it raised."""
    tracemalloc.start()
    raised: BaseException | None = None
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def bad_frame() -> Iterator[bytes]:
    yield frame(1, 2**31)


def flood() -> Iterator[bytes]:
    """Well-formed output of the command's for 30 s (2 MiB every 10 ms), never a status."""
    chunk = (frame(1, 32768) + init_frame(1, b"K" * (32768 - 5))) * 64
    ends = time.monotonic() + 30
    while time.monotonic() < ends:
        yield chunk
        time.sleep(0.01)


def labelled(**config: Any) -> dict[str, Any]:
    return {**CONTAINER, "Config": {"Labels": {lib.LABEL: "1"}, **config}}


REPLIES = {
    "malformed stream": ({"stream": bad_frame}, "exec"),
    "exec inspect": ({"exec_inspect": endless_json(HUGE)}, "exec"),
    "container inspect": ({"inspect": endless_json(HUGE)}, "exec"),
    "container listing": ({"containers": endless_json(HUGE)}, "list"),
}


@pytest.mark.parametrize("case", list(REPLIES))
def test_no_reply_is_held_without_bound(tmp_path: Path, case: str) -> None:
    replies, call = REPLIES[case]
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, **replies):
        boxes = boxes_on(sock)
        run = {"exec": lambda: boxes.exec("victim", ["true"], timeout=20), "list": boxes.list}
        peak, raised = peak_of(run[call])
    assert isinstance(raised, lib.SandboxError), raised
    assert peak < 8 * 2**20, f"{case}: the library held {peak} bytes of a hostile reply"


def test_an_endless_answer_is_capped_and_stops_the_sandbox(tmp_path: Path) -> None:
    """Output without end and no report from the init: the exec ends near its timeout with
    max_output kept, says it timed out and escaped, and the sandbox is stopped."""
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, stream=flood) as daemon:
        boxes = boxes_on(sock)
        began = time.monotonic()
        results: list[Any] = []
        peak, raised = peak_of(lambda: results.append(
            boxes.exec("victim", ["yes"], timeout=2, max_output=2**20)))  # fmt: skip
        took = time.monotonic() - began
    assert raised is None and len(results) == 1, raised
    result = results[0]
    assert (result.timed_out, result.escaped, result.truncated) == (True, True, True), result
    assert len(result.stdout) == 2**20 and result.rc is None
    assert daemon.killed == [CONTAINER_ID], daemon.requests
    assert peak < 8 * 2**20 and took < 12, (peak, took)


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (answered(b"x") + answered(b"forged"), "after its status"),
        (frame(1, 14) + init_frame(3, b"exit 0 ok"), "malformed status"),
        (frame(1, 10) + init_frame(7, b"hello"), "not the sandbox init's frames"),
    ],
    ids=["bytes after the status", "malformed status", "unknown frame type"],
)
def test_init_frames_are_read_as_hostile(tmp_path: Path, stream: bytes, match: str) -> None:
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, stream=lambda: iter([stream])):
        with pytest.raises(lib.StreamError, match=match):
            boxes_on(sock).exec("victim", ["true"], timeout=10)


def test_an_answer_without_the_inits_report_stops_the_sandbox(tmp_path: Path) -> None:
    """The command killed its init (or the init died): the stream ends with no status. The
    result says escaped and the sandbox is stopped: nothing vouches that its processes ended."""
    sock = tmp_path / "docker.sock"
    partial = frame(1, 8) + init_frame(1, b"out")
    with hostile_daemon(sock, stream=lambda: iter([partial])) as daemon:
        result = boxes_on(sock).exec("victim", ["true"], timeout=10)
    assert (result.rc, result.escaped, result.timed_out, result.stdout) == (
        None, True, False, "out"), result  # fmt: skip
    assert daemon.killed == [CONTAINER_ID]


def silent() -> Iterator[bytes]:
    time.sleep(30)  # neither reads the exec's stdin nor writes
    yield b""


@pytest.mark.parametrize(
    ("replies", "stdin"),
    [
        ({"exec_inspect": endless_json(400, trickle=0.1)}, None),  # 40 s, a byte at a time
        ({"stream": silent}, b"x" * HUGE),  # stdin never read
    ],
    ids=["trickled exec inspect", "stdin never read"],
)
def test_an_exec_ends_near_its_timeout_whatever_the_daemon_does(
    tmp_path: Path, replies: dict[str, Any], stdin: bytes | None
) -> None:
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, **replies):
        boxes = boxes_on(sock)
        began = time.monotonic()
        try:
            boxes.exec("victim", ["cat"], stdin=stdin, timeout=2)
        except lib.SandboxError:
            pass
        took = time.monotonic() - began
    assert took < 12, f"an exec with a 2 s timeout took {took:.1f} s"


def inspected_once_then_trickled() -> Callable[[], Iterator[bytes]]:
    """The container's inspect: answered once (before the command), then a byte at a time
    (the library's look after the command, at whether Docker recorded an OOM kill)."""
    calls = [0]

    def inspect() -> Iterator[bytes]:
        calls[0] += 1
        yield from (json_reply(labelled()) if calls[0] == 1 else endless_json(4000, 0.05))()

    inspect.whole = True  # type: ignore[attr-defined]
    return inspect


def test_a_stalled_look_after_the_command_keeps_its_result(tmp_path: Path) -> None:
    """The command ran and failed (rc 1): a daemon that then stalls the container's inspect
    neither holds the exec past its bound nor takes away its result."""
    sock = tmp_path / "docker.sock"
    done = json_reply({"ExitCode": 0, "Running": False, "Pid": 9})
    failed = answered(status=b"exit 1")
    with hostile_daemon(sock, stream=lambda: iter([failed]), inspect=inspected_once_then_trickled(),
                        exec_inspect=done):  # fmt: skip
        began = time.monotonic()
        result = boxes_on(sock).exec("victim", ["false"], timeout=2)
        took = time.monotonic() - began
    assert result.rc == 1 and result.limits_hit == [], result
    assert took < 12, f"an exec with a 2 s timeout took {took:.1f} s"


@pytest.mark.parametrize(
    "container",
    [
        {k: v for k, v in labelled().items() if k != "HostConfig"},
        {k: v for k, v in labelled().items() if k != "State"},
        {**labelled(), "HostConfig": None},
        {**CONTAINER, "Config": {"Labels": f"{lib.LABEL}=1"}},
        labelled(Labels={lib.LABEL: "1", lib.LABEL_EXPIRES: "inf"}),
        labelled(Labels={lib.LABEL: "1"}),  # no expiry at all
    ],
    ids=[
        "no HostConfig",
        "no State",
        "null HostConfig",
        "labels a string",
        "expires inf",
        "no expiry",
    ],
)
def test_a_malformed_sandbox_is_reported_and_skipped_not_fatal(
    tmp_path: Path, container: dict[str, Any]
) -> None:
    sock = tmp_path / "docker.sock"
    listing = json_reply([{"Id": CONTAINER_ID, "Names": ["/victim"]}])
    with hostile_daemon(sock, containers=listing, inspect=json_reply(container)):
        boxes = boxes_on(sock)
        found = boxes.list()
        reaped = boxes.reap()
    assert reaped == []
    assert all("error" in s for s in found), found
    assert len(boxes.skipped) == len(found) == 1, boxes.skipped


def test_a_stream_cut_mid_frame_is_a_protocol_error(tmp_path: Path) -> None:
    def cut() -> Iterator[bytes]:
        yield frame(1, 100) + init_frame(1, b"only part of it")

    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, stream=cut):
        with pytest.raises(lib.StreamError, match="cut"):
            boxes_on(sock).exec("victim", ["true"], timeout=10)


def test_malformed_file_content_from_a_sandbox_is_one_sentence(tmp_path: Path) -> None:
    def not_base64() -> Iterator[bytes]:
        yield answered(b"!!!!!!!!\n")

    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, stream=not_base64):
        with pytest.raises(lib.SandboxError, match="not base64"):
            boxes_on(sock).get_file("victim", "/tmp/x")


def test_the_host_maximum_ttl_bounds_a_planted_far_expiry(tmp_path: Path) -> None:
    """A sandbox whose expiry label lies beyond its creation time plus the host's maximum
    TTL (planted by root in an outer, or made by a caller with a higher max_ttl) is reaped
    once that maximum has passed."""
    planted = {**labelled(Labels={lib.LABEL: "1", lib.LABEL_EXPIRES: "99999999999"}),
               "Created": "2026-01-01T00:00:00.123456789Z"}  # fmt: skip
    sock = tmp_path / "docker.sock"
    listing = json_reply([{"Id": CONTAINER_ID, "Names": ["/victim"]}])
    with hostile_daemon(sock, containers=listing, inspect=json_reply(planted)) as daemon:
        boxes = lib.Sandboxes(
            socket_path=str(sock), check=False, audit_log=None, fingerprint_key=None,
            max_ttl=3600,
        )  # fmt: skip
        reaped = boxes.reap()
    assert reaped == ["victim"] and daemon.removed == [CONTAINER_ID]


LISTED = json_reply([{"Id": CONTAINER_ID, "Names": ["/victim"]}])
MORE_REPLIES = {
    # The bound must not depend on what the daemon says its reply is.
    "a listing calling itself a stream": {
        "containers": endless_json(HUGE, content_type="application/vnd.docker.raw-stream")
    },
    # Redirects are the daemon's to make up: never followed, never read whole.
    "a redirect with a large body": {
        "containers": endless_json(HUGE, status="302 Found", headers="Location: /_ping\r\n")
    },
}


@pytest.mark.parametrize("case", list(MORE_REPLIES))
def test_no_reply_escapes_the_bound_by_what_it_claims_to_be(tmp_path: Path, case: str) -> None:
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, **MORE_REPLIES[case]):
        boxes = boxes_on(sock)
        peak, raised = peak_of(boxes.list)
    assert isinstance(raised, lib.SandboxError), raised
    assert peak < 8 * 2**20, f"{case}: the library held {peak} bytes"


NESTED = b"[" * 200000 + b"]" * 200000
SHAPES = {
    "listing [1]": {"containers": json_reply([1])},
    "listing [{}]": {"containers": json_reply([{}])},
    "listing with a numeric Id": {"containers": json_reply([{"Id": 5}])},
    "an error without a message": {"containers": json_reply({}, status=500)},
    "an error that is a list": {"containers": json_reply([], status=500)},
    "deeply nested JSON": {"containers": raw_reply(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(NESTED)).encode() + b"\r\n\r\n" + NESTED)},
    "too many sandboxes": {"containers": json_reply(
        [{"Id": f"{n:064x}", "Names": [f"/s{n}"]} for n in range(5000)]),
        "inspect": json_reply(labelled(Labels={lib.LABEL: "1", lib.LABEL_EXPIRES: "99999999999"}))},
}  # fmt: skip


@pytest.mark.parametrize("case", list(SHAPES))
def test_a_malformed_reply_is_one_sentence_never_a_traceback(tmp_path: Path, case: str) -> None:
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, **SHAPES[case]):
        boxes = boxes_on(sock)
        began = time.monotonic()
        try:
            found = boxes.list()
        except lib.SandboxError:
            found = []
        took = time.monotonic() - began
    assert all("error" in s for s in found), found
    assert took < 20, f"{case}: listing took {took:.0f} s"


def test_a_sandbox_removed_between_listing_and_inspect_does_not_stop_the_reaper(
    tmp_path: Path,
) -> None:
    gone, expired = "a" * 64, CONTAINER_ID
    listing = json_reply([{"Id": gone, "Names": ["/gone"]}, {"Id": expired, "Names": ["/victim"]}])
    replies = {
        "containers": listing,
        f"inspect {gone}": json_reply({"message": "No such container: gone"}, status=404),
        "inspect": json_reply(labelled(Labels={lib.LABEL: "1", lib.LABEL_EXPIRES: "1"})),
    }
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, **replies) as daemon:
        reaped = boxes_on(sock).reap()
    assert reaped == ["victim"] and daemon.removed == [expired]


def test_a_command_that_exits_without_reading_its_stdin_keeps_its_output(tmp_path: Path) -> None:
    def answers_and_closes() -> Iterator[bytes]:
        yield answered(b"ok\n")

    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, stream=answers_and_closes):
        result = boxes_on(sock).exec("victim", ["true"], stdin=b"x" * 2**24, timeout=10)
    assert (result.rc, result.stdout, result.timed_out) == (0, "ok\n", False)


@pytest.mark.parametrize("after", [b"", frame(2, 4) + b"err\n"], ids=["alone", "then-more"])
def test_output_read_with_the_upgrade_head_is_kept(tmp_path: Path, after: bytes) -> None:
    # A quick command on a busy host: its output is on the socket before the client reads
    # the 101 reply, so the HTTP reader buffers the first frame with the head (CI lost one
    # task's output in twenty this way, rc 0 and stdout empty). Half a frame in that
    # buffer and the rest on the socket must join too.
    sock = tmp_path / "docker.sock"
    out = frame(1, 8) + init_frame(1, b"ok\n")  # the command's output, then its status
    status = answered(status=b"exit 0")
    with hostile_daemon(sock, stream=upgraded_with(out[:9], out[9:] + after + status)):
        result = boxes_on(sock).exec("victim", ["true"], timeout=10)
    assert (result.rc, result.stdout, result.stderr) == (0, "ok\n", "err\n" if after else "")


def render_reaper(tmp_path: Path, sockets: list[str], timeout: int) -> Path:
    """roles/sandbox_reaper's fortress-reap, rendered with the role's defaults for these
    sockets, importing this checkout's library as the role installs it (a `sandbox`
    package on its path)."""
    defaults = yaml.safe_load((REPO_ROOT / "roles/sandbox_reaper/defaults/main.yml").read_text())
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - a Python script, not HTML
    env.filters["to_json"] = json.dumps
    env.filters["comment"] = lambda text: f"# {text}"
    template = REPO_ROOT / "roles/sandbox_reaper/templates/usr/local/sbin/fortress-reap.j2"
    values = {**defaults, "sandbox_reaper_sockets": sockets, "sandbox_reaper_outer_sockets": "",
              "sandbox_reaper_containerd_socket": "", "sandbox_reaper_daemon_timeout": timeout,
              "sandbox_reaper_audit_log": str(tmp_path / "audit.log"),
              "ansible_managed": "test"}  # fmt: skip
    script = tmp_path / "fortress-reap"
    script.write_text(env.from_string(template.read_text()).render(**values))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "sandbox").symlink_to(REPO_ROOT / "plugins/module_utils/sandbox")
    return script


def test_one_hung_daemon_does_not_stop_the_reaper_from_reaping_the_others(tmp_path: Path) -> None:
    hung = tmp_path / "hung.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(hung))
    listener.listen(16)  # accepts connections, never answers: a hung or hostile daemon
    good = tmp_path / "good.sock"
    replies = {
        "containers": json_reply([{"Id": CONTAINER_ID, "Names": ["/victim"]}]),
        "inspect": json_reply(labelled(Labels={lib.LABEL: "1", lib.LABEL_EXPIRES: "1"})),
    }
    script = render_reaper(tmp_path, [str(hung), str(good)], timeout=5)
    try:
        with hostile_daemon(good, **replies) as daemon:
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                env={**os.environ, "PYTHONPATH": str(tmp_path / "lib")}, check=False,
            )  # fmt: skip
            took = time.monotonic() - began
    finally:
        listener.close()
    assert daemon.removed == [CONTAINER_ID], done.stdout + done.stderr
    assert took < 60, f"one hung daemon held the reaper {took:.0f} s"
    assert done.returncode == 1 and "gave up after 5 s" in done.stderr, done.stderr


# What a daemon may say of its runsc runtimes: the role's flags, then the debug runtime the
# gvisor role renders when gvisor_debug_enabled (it logs every syscall's arguments to disk),
# and runtimes weakened by hand (host sockets, raw sockets, a flag and its value split).
ROLE_ARGS = ["--platform=systrap", "--overlay2=root:memory", "--host-uds=none"]
RUNSC_RUNTIMES = {
    "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": [*ROLE_ARGS, "--network=sandbox"]},
    "runsc-debug": {"path": "/usr/bin/runsc", "runtimeArgs": [
        *ROLE_ARGS, "--network=sandbox", "--debug", "--debug-log=/var/log/runsc/%ID%/",
        "--strace"]},
    "runsc-uds": {"path": "/usr/bin/runsc", "runtimeArgs": [*ROLE_ARGS, "--host-uds=all"]},
    "runsc-split": {"path": "/usr/bin/runsc", "runtimeArgs": ["--host-uds", "all"]},
    "runsc-raw": {"path": "/usr/bin/runsc", "runtimeArgs": [*ROLE_ARGS, "--net-raw"]},
    "runsc-odd": {"path": "/usr/bin/runsc", "runtimeArgs": "--strace"},
}  # fmt: skip


def create_on(runtime: str, tmp_path: Path) -> tuple[BaseException | None, list[str]]:
    """Create a sandbox under runtime on a daemon with RUNSC_RUNTIMES: what it raised, and
    the create requests the daemon saw."""
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, info=json_reply({"Runtimes": RUNSC_RUNTIMES})) as daemon:
        _, raised = peak_of(
            lambda: boxes_on(sock).create(lib.SandboxSpec(image="x", name="s", runtime=runtime))
        )
    return raised, [path for method, path in daemon.requests if "/containers/create" in path]


@pytest.mark.parametrize("runtime", [r for r in RUNSC_RUNTIMES if r != "runsc"])
def test_a_debug_or_weakened_runsc_runtime_is_refused_before_anything_is_created(
    tmp_path: Path, runtime: str
) -> None:
    """The runtime's flags are checked against the contract's allowlist before the create
    request: nothing of the spec starts under a runtime that straces its syscalls to disk or
    opens the host's unix sockets. Control: the role's own runtime reaches the create."""
    raised, creates = create_on(runtime, tmp_path)
    assert isinstance(raised, lib.SandboxError), raised
    assert "which sandboxes never run under" in str(raised), raised
    assert creates == [], creates
    raised, creates = create_on("runsc", tmp_path)
    assert len(creates) == 1 and "which sandboxes never run under" not in str(raised), raised


def test_a_socket_renamed_over_the_checked_one_gets_no_request(tmp_path: Path) -> None:
    """Root in a dind outer is host uid 0 and owns the directory of its host-side socket: it
    can rename a socket of its choosing over the one the library checked. Every connection
    the library opens afterwards (an exec's hijacked stream leaves the pool, so the next
    request connects again) must reach the socket it checked. Control: an adapter made after
    the swap checks and reaches the new one."""
    sock, swapped = tmp_path / "docker.sock", tmp_path / "swapped.sock"
    with hostile_daemon(sock) as checked, hostile_daemon(swapped) as other:
        boxes = lib.Sandboxes(socket_path=str(sock), socket_owner=os.getuid(), audit_log=None,
                              fingerprint_key=None, runsc_digests=digests_of(sock))  # fmt: skip
        os.rename(swapped, sock)
        boxes.exec("victim", ["true"], timeout=10)
        assert other.requests == [], other.requests
        assert ("GET", "/exec/exec1/json") in [(m, p.split("?")[0]) for m, p in checked.requests]
        lib.Sandboxes(socket_path=str(sock), socket_owner=os.getuid(), audit_log=None,
                      fingerprint_key=None).list()  # fmt: skip
        assert other.requests, "the control adapter never reached the socket now at the path"


def test_the_client_outlives_its_adapter_on_the_checked_socket(tmp_path: Path) -> None:
    """fortress-reap uses `Sandboxes(socket_path=...).client` once the adapter is gone. The
    verified socket's descriptor must live as long as the client: closed with the adapter,
    its number is taken by the client's next socket, which then connects to itself (found by
    an attack review: the reaper's outer cleanup failed on every run)."""
    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock) as daemon:
        client = lib.Sandboxes(socket_path=str(sock), socket_owner=os.getuid(), audit_log=None,
                               fingerprint_key=None).client  # fmt: skip
        gc.collect()
        assert client.containers.list(all=True)
        assert ("GET", "/containers/json") in [(m, p.split("?")[0].removeprefix("/v1.41"))
                                               for m, p in daemon.requests]  # fmt: skip
