"""A hostile Docker daemon on a unix socket: what root in a dind outer can put behind the
outer's socket. It answers the few API calls the sandbox library makes for an exec with
plausible JSON, then streams whatever the test asks for (a frame header announcing
gigabytes, a malformed frame, endless output). Used by tests/security to prove the library
reads every answer as hostile; it is not a stand-in for dockerd anywhere else."""

from __future__ import annotations

import json
import re
import socket
import socketserver
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

    def answer(self, method: str, path: str) -> bool:
        """Write the answer; False when the connection was hijacked (then closed)."""
        srv = self.server
        if path == "/_ping":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        elif path == "/version":
            self.wfile.write(_json(200, {"ApiVersion": "1.41", "MinAPIVersion": "1.12",
                                         "Version": "hostile"}))  # fmt: skip
        elif path == "/info":
            self.wfile.write(_json(200, {"Runtimes": {"runsc": {"path": "/usr/bin/runsc"}},
                                         "Labels": []}))  # fmt: skip
        elif method == "GET" and path.startswith("/containers/") and path.endswith("/json"):
            self.wfile.write(_json(200, {
                "Id": CONTAINER_ID, "Name": "/victim",
                "State": {"Status": "running", "Running": True},
                "Config": {"Labels": {contract().LABEL: "1"}, "Image": "x"},
                "HostConfig": {"Runtime": "runsc"}, "Image": "sha256:" + "0" * 64,
            }))  # fmt: skip
        elif method == "POST" and path.endswith("/exec"):
            with srv.lock:
                srv.execs += 1
                exec_id = f"exec{srv.execs}"
            self.wfile.write(_json(201, {"Id": exec_id}))
        elif method == "POST" and path.startswith("/exec/") and path.endswith("/start"):
            self.wfile.write(UPGRADED)
            self.wfile.flush()
            time.sleep(0.05)  # the client takes the socket from its HTTP reader first
            if path == "/exec/exec1/start":  # the command's stream; later execs are the kill
                try:
                    for chunk in srv.stream():
                        self.wfile.write(chunk)
                        srv.sent += len(chunk)
                except OSError:
                    pass
            return False
        elif path.startswith("/exec/") and path.endswith("/json"):
            self.wfile.write(_json(200, {"ExitCode": 0, "Running": False}))
        else:
            self.wfile.write(_json(404, {"message": f"hostile daemon: no {method} {path}"}))
        self.wfile.flush()
        return True


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, stream: Callable[[], Iterator[bytes]]) -> None:
        super().__init__(path, _Handler)
        self.stream = stream
        self.lock = threading.Lock()
        self.execs = 0
        self.sent = 0


@contextmanager
def hostile_daemon(path: Path, stream: Callable[[], Iterator[bytes]]) -> Iterator[_Server]:
    """Serve on path until the block ends; stream() gives the bytes of the first exec."""
    server = _Server(str(path), stream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)


def frame(stream: int, size: int) -> bytes:
    """A Docker stream frame header (stream id, three zero bytes, big-endian size)."""
    return bytes([stream, 0, 0, 0]) + size.to_bytes(4, "big")


def raw_socket_reachable(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        return s.connect_ex(str(path)) == 0
