"""The egress proxy on loopback, as the hosts run it (a process of its own, `python -I
egress-proxy.py CONFIG`), and one request through it from a chosen source address: shared
by the load test (tests/unit/test_egress_load.py) and bench/egress_tenants.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from fortress_lab.common import REPO_ROOT

PROXY = REPO_ROOT / "roles" / "egress" / "files" / "egress-proxy.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_proxy(
    config: dict[str, Any], path: Path, log: IO[Any] | int = subprocess.DEVNULL
) -> tuple[subprocess.Popen, int]:
    """(process, port) of a proxy on 127.0.0.1 with config (written to path, on a free port
    of its own), once it listens; its output goes to log."""
    port = free_port()
    path.write_text(json.dumps({**config, "listen": ["127.0.0.1"], "port": port}))
    proc = subprocess.Popen(
        [sys.executable, "-I", str(PROXY), str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    proc.wait(timeout=10)
    raise RuntimeError(f"the egress proxy of {path} did not listen on 127.0.0.1:{port}")


def ask(port: int, source: str, target: str) -> tuple[float, int, bytes]:
    """(seconds, status, body) of one `GET target` through the proxy from source; status 0
    when the proxy closed the connection without an answer this client could read (a
    refusal sent and the connection closed before the request was read resets it)."""
    began = time.monotonic()
    answer = b""
    with socket.socket() as conn:
        conn.settimeout(10)
        conn.bind((source, 0))
        conn.connect(("127.0.0.1", port))
        try:
            conn.sendall(f"GET {target} HTTP/1.0\r\n\r\n".encode())
            while data := conn.recv(65536):
                answer += data
        except ConnectionResetError:
            answer = answer if answer.startswith(b"HTTP/") else b""
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return time.monotonic() - began, status, answer.partition(b"\r\n\r\n")[2]
