"""A hostile Docker daemon on a unix socket: what root in a dind outer can put behind the
outer's socket. It answers the few API calls the sandbox library makes for an exec with
plausible JSON, then streams whatever the test asks for (a frame header announcing
gigabytes, a malformed frame, endless output). Used by tests/security to prove the library
reads every answer as hostile; it is not a stand-in for dockerd anywhere else."""

from __future__ import annotations

import hashlib
import json
import re
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import contract

CONTAINER_ID = "c0ffee" * 10 + "c0ff"
UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


def _json(status: int, body: object) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    )
    return head.encode() + b"\r\n" + data


def json_reply(body: object, status: int = 200) -> Callable[[], Iterator[bytes]]:
    """A reply of one JSON document (for replies=...): a whole HTTP message, after which the
    connection stays open like a real daemon's."""

    def reply() -> Iterator[bytes]:
        yield _json(status, body)

    reply.whole = True  # type: ignore[attr-defined]
    return reply


def raw_reply(data: bytes) -> Callable[[], Iterator[bytes]]:
    """A reply of these exact bytes, HTTP head included."""
    return lambda: iter([data])


def endless_json(
    size: int, trickle: float = 0.0, status: str = "200 OK",
    content_type: str = "application/json", headers: str = "",
) -> Callable[[], Iterator[bytes]]:  # fmt: skip
    """A reply announcing a JSON body of size bytes and sending it (slowly with trickle: one
    byte per trickle seconds), with the status, content type and extra header lines given."""

    def reply() -> Iterator[bytes]:
        head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{headers}"
        yield f"{head}Content-Length: {size}\r\n\r\n".encode()
        if trickle:
            for _ in range(size):
                time.sleep(trickle)
                yield b" "
        else:
            for _ in range(size // 65536):
                yield b" " * 65536

    return reply


def upgraded_with(first: bytes, *later: bytes) -> Callable[[], Iterator[bytes]]:
    """An exec stream whose first bytes go out in one write with the 101 reply's head: what
    a busy host gives a quick command (the output is there before the client reads the
    head), so the client's HTTP reader buffers them with it. Each of later follows after a
    pause, from the socket."""

    def reply() -> Iterator[bytes]:
        yield UPGRADED + first
        for data in later:
            time.sleep(0.05)
            yield data

    reply.head = True  # type: ignore[attr-defined]
    return reply


CONTAINER = {
    "Id": CONTAINER_ID, "Name": "/victim", "State": {"Status": "running", "Running": True},
    "Config": {"Labels": {}, "Image": "x"}, "HostConfig": {"Runtime": "runsc"},
    "Image": "sha256:" + "0" * 64, "Created": "2026-12-06T12:00:00.000000000Z",
}  # fmt: skip


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, path = line.decode().split()[:2]
            length = 0
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.rfile.read(length)
            path = re.sub(r"^/v[0-9.]+", "", path.split("?")[0])
            if not self.answer(method, path):
                return

    def reply(self, name: str, default: Callable[[], Iterator[bytes]]) -> bool:
        """Send the scripted reply (or the default); whether the connection may go on (the
        reply was a whole HTTP message)."""
        script = self.server.replies.get(name, default)
        try:
            for chunk in script():
                self.wfile.write(chunk)
                self.wfile.flush()
                self.server.sent += len(chunk)
        except OSError:
            return False
        return getattr(script, "whole", False)

    def answer(self, method: str, path: str) -> bool:
        """Write the answer; False when the connection is done (hijacked, or a scripted reply
        that may not be a whole HTTP message)."""
        srv = self.server
        srv.requests.append((method, path))
        container = {**CONTAINER, "Config": {"Labels": {contract().LABEL: "1"}, "Image": "x"}}
        if path == "/_ping":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        elif path == "/version":
            self.wfile.write(_json(200, {"ApiVersion": "1.41", "MinAPIVersion": "1.12",
                                         "Version": "hostile"}))  # fmt: skip
        elif path == "/info":
            info = {"Runtimes": {"runsc": {"path": "/usr/bin/runsc"}}, "Labels": []}
            return self.reply("info", json_reply(info))
        elif method == "GET" and path == "/containers/json":
            return self.reply("containers", json_reply([container]))
        elif method == "GET" and path.startswith("/containers/") and path.endswith("/json"):
            which = f"inspect {path.split('/')[2]}"  # one container's own reply, if scripted
            which = which if which in srv.replies else "inspect"
            return self.reply(which, json_reply(container))
        elif method == "GET" and path.startswith("/images/") and path.endswith("/json"):
            image = {"Id": CONTAINER["Image"], "Config": {"Entrypoint": None, "Cmd": ["sh"]}}
            return self.reply("image", json_reply(image))
        elif method == "POST" and path.endswith("/exec"):
            with srv.lock:
                srv.execs += 1
                exec_id = f"exec{srv.execs}"
            self.wfile.write(_json(201, {"Id": exec_id}))
        elif method == "POST" and path.startswith("/exec/") and path.endswith("/start"):
            # The command's stream (the first exec's; later ones get "later").
            which = "exec" if path == "/exec/exec1/start" else "later"
            if not getattr(srv.replies.get(which), "head", False):
                self.wfile.write(UPGRADED)
                self.wfile.flush()
                time.sleep(0.05)  # the client reads the head alone (see upgraded_with)
            self.reply(which, lambda: iter(()))
            return False
        elif method == "POST" and path.startswith("/containers/") and path.endswith("/kill"):
            srv.killed.append(path.split("/")[2])
            self.wfile.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif method == "DELETE" and path.startswith("/containers/"):
            srv.removed.append(path.split("/")[2])
            self.wfile.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif path.startswith("/exec/") and path.endswith("/json"):
            return self.reply("exec_inspect", json_reply({"ExitCode": 0, "Running": False}))
        else:
            self.wfile.write(_json(404, {"message": f"hostile daemon: no {method} {path}"}))
        self.wfile.flush()
        return True


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, replies: dict[str, Callable[[], Iterator[bytes]]]) -> None:
        super().__init__(path, _Handler)
        self.replies = replies
        self.lock = threading.Lock()
        self.execs = 0
        self.sent = 0
        self.removed: list[str] = []  # container IDs a DELETE asked to remove
        self.killed: list[str] = []  # container IDs a kill asked to stop
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request


@contextmanager
def hostile_daemon(
    path: Path, stream: Callable[[], Iterator[bytes]] | None = None,
    **replies: Callable[[], Iterator[bytes]],
) -> Iterator[_Server]:  # fmt: skip
    """Serve on path until the block ends. stream() gives the bytes of the first exec's
    stream; replies replace others: later (later execs' streams), exec_inspect, containers
    (the listing), inspect (a container), info (`docker info`): raw bytes, HTTP head
    included except for streams."""
    server = _Server(str(path), {**({"exec": stream} if stream else {}), **replies})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with _runsc_sandbox(path.parent):
            yield server
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)


def digests_of(path: Path) -> str:
    """The runsc digest directory published for the hostile daemon at path (the library's
    runsc_digests for it)."""
    return str(path.parent / "runsc.d")


@contextmanager
def _runsc_sandbox(where: Path) -> Iterator[None]:
    """A stand-in for CONTAINER_ID's runsc-sandbox process (bash running a script named
    boot, as `runsc-sandbox boot ID`) and a digest directory publishing bash: what the
    library proves on the host before every exec (proof.py). A hostile daemon has no real
    sandbox; these tests attack what the daemon answers, not the proof."""
    (where / "boot").write_text("sleep 600\n")
    (where / "runsc.d").mkdir(mode=0o755, exist_ok=True)
    bash = Path("/bin/bash").resolve()
    digest = hashlib.sha256(bash.read_bytes()).hexdigest()
    (where / "runsc.d" / "stand-in.sha256").write_text(f"{digest}  {bash}\n")
    proc = subprocess.Popen(
        ["runsc-sandbox", "boot", CONTAINER_ID], executable=str(bash), cwd=where,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        proc.wait()


def frame(stream: int, size: int) -> bytes:
    """A Docker stream frame header (stream id, three zero bytes, big-endian size)."""
    return bytes([stream, 0, 0, 0]) + size.to_bytes(4, "big")


def init_frame(kind: int, data: bytes) -> bytes:
    """One frame of the sandbox init's (roles/gvisor/files/sandbox-init.c): a type byte, a
    big-endian 4-byte size, the bytes."""
    return bytes([kind]) + len(data).to_bytes(4, "big") + data


def answered(out: bytes = b"", err: bytes = b"", status: bytes = b"exit 0") -> bytes:
    """An exec's whole answer as the init gives it, in one Docker stdout frame: the
    command's output, its errors, then the status."""
    inner = (init_frame(1, out) if out else b"") + (init_frame(2, err) if err else b"")
    inner += init_frame(3, status)
    return frame(1, len(inner)) + inner
