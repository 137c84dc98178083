"""The egress proxy under 10,000 generated request heads (issue 17: one view of every name).

A real proxy on loopback with a real upstream, and two listeners no rule allows: one on
another loopback address at the allowed port (a name or literal read differently would
reach it), one on the allowed address at another port. Heads are built from the pieces an
attacker varies (method, target form, host spelling: case, trailing dots, NUL and other
bytes, IP literals in every notation, IDNA, userinfo; ports in other digits and out of
range; versions; header lines of arbitrary bytes). Properties, over every head:
- no request reaches a listener no rule allows;
- every request gets an HTTP answer, and at least one log line, none of which a client byte
  can split into two.
Hypothesis runs derandomized with a fixed example count and no database (the same 10,000
heads on every run), bounded in time by the proxy's short timeouts."""

from __future__ import annotations

import contextlib
import io
import json
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_egress_proxy import LoopbackServer, proxy, proxy_on_loopback

EXAMPLES = 10_000


class Listener(LoopbackServer):
    """A TCP listener that counts the connections it accepts; each gets one small answer
    once it has sent something or closed its side."""

    def __init__(self, address: str, port: int = 0) -> None:
        self.accepted = 0
        super().__init__(address, port)

    def handle(self, conn: socket.socket) -> None:
        self.accepted += 1
        with conn:
            try:
                conn.settimeout(2)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            except OSError:
                pass


@pytest.fixture(scope="module")
def world() -> Iterator[dict]:
    allowed = Listener("127.0.0.1")
    other_address = Listener("127.0.0.2", allowed.port)  # same port, no rule for the address
    other_port = Listener("127.0.0.1")  # the allowed address, a port no rule names
    config = {
        "policy": "fuzz", "deny": ["169.254.0.0/16"], "nonpublic": [], "exempt": [],
        "connect_timeout": 1, "idle_timeout": 1,
        "rules": [
            {"host": "localhost", "port": allowed.port},
            {"cidr": "127.0.0.1/32", "port": allowed.port},
            {"suffix": ".allowed.test", "port": allowed.port},
        ],
    }  # fmt: skip
    lines: list[str] = []
    real_log = proxy.Proxy.log

    def log(self: object, *args: str, **fields: object) -> None:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            real_log(self, *args, **fields)
        lines.extend(out.getvalue().splitlines(keepends=True))

    proxy.Proxy.log = log
    try:
        with proxy_on_loopback(config) as port:
            yield {"port": port, "allowed": allowed, "forbidden": [other_address, other_port],
                   "lines": lines}  # fmt: skip
    finally:
        proxy.Proxy.log = real_log
        for listener in (allowed, other_address, other_port):
            listener.server.close()


HOSTS = [
    "localhost", "LOCALHOST", "localhost.", "Localhost..", "127.0.0.1", "127.0.0.2", "127.1",
    "127.0.0.1.", "2130706433", "0x7f000002", "0177.0.0.2", "127.0.0.02", "[::ffff:127.0.0.2]",
    "[::1]", "::1", "[127.0.0.2]", "x.allowed.test", "X.ALLOWED.TEST.", "allowed.test",
    ".allowed.test", "localhost\x00.allowed.test", "127.0.0.2\x00.allowed.test",
    "127.0.0.2#.allowed.test", "127.0.0.2%2e.allowed.test", "127.0.0.2.allowed.test",
    "a@127.0.0.2", "localhost@127.0.0.2", "127.0.0.2 .allowed.test", "xn--bcher-kva.allowed.test",
    "bücher.allowed.test", "localhost\t", "local\u0131host", "\uff4c\uff4f\uff43\uff41\uff4c"
    "\uff48\uff4f\uff53\uff54",
]  # fmt: skip
METHODS = ["GET", "CONNECT", "POST", "get", "connect", "G ET", "GET\x00", "PUT"]
VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1", "HTTP/1.1 x", "", "HTTP/1.1\x0b"]
HEADERS = [
    "Host: localhost", "Host: 127.0.0.2", "Content-Length: 0", "Content-Length: 5",
    "Transfer-Encoding: chunked", "Connection: keep-alive", " folded", "X: a\rb", "X:\x00",
]  # fmt: skip


@st.composite
def heads(draw: st.DrawFn, ports: tuple[int, int]) -> bytes:
    host = draw(st.sampled_from(HOSTS) | st.text(
        st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=24))  # fmt: skip
    port = draw(st.sampled_from([str(p) for p in ports] + ["", "0", "65536", "\u0663\u0662",
                                                          "+80", "080", "99999999999"])
                | st.text("0123456789", min_size=1, max_size=6))  # fmt: skip
    method = draw(st.sampled_from(METHODS) | st.text(max_size=8))
    authority = f"{host}:{port}" if port else host
    target = draw(st.sampled_from([
        f"http://{authority}/path", f"http://u:p@{authority}/", authority, f"//{authority}/",
        f"https://{authority}/", f"http://{authority}#frag", "/relative",
    ]))  # fmt: skip
    version = draw(st.sampled_from(VERSIONS))
    fields = draw(st.lists(st.sampled_from(HEADERS) | st.text(max_size=20).map(
        lambda t: t.replace("\r\n", "")), max_size=4))  # fmt: skip
    if draw(st.booleans()):  # HTTP/1.1 needs a Host header (h11 refuses a head without one)
        fields.insert(0, f"Host: {authority}")
    line = " ".join(part for part in (method, target, version) if part)
    head = "\r\n".join([line, *fields]).encode("utf-8", "surrogatepass")
    return head.replace(b"\r\n\r\n", b"\r\n") + b"\r\n\r\n"


def ask(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        conn.shutdown(socket.SHUT_WR)  # no body, nothing more: the proxy must still answer
        answer = b""
        while data := conn.recv(65536):
            answer += data
    return answer


def test_no_generated_head_reaches_a_listener_no_rule_allows(world: dict) -> None:
    port = world["port"]
    seen = {"answers": 0}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(heads((world["allowed"].port, world["forbidden"][1].port)))
    def one(head: bytes) -> None:
        logged = len(world["lines"])
        before = [f.accepted for f in world["forbidden"]]
        answer = ask(port, head)
        assert answer.startswith(b"HTTP/1.1 "), (head, answer[:200])
        assert len(world["lines"]) > logged, head  # at least one log line
        for line in world["lines"][logged:]:  # one JSON object per line, whatever was sent
            assert line.endswith("\n") and "\n" not in line[:-1] and "\r" not in line, line
            assert json.loads(line)["decision"] in ("allow", "deny"), line
        assert [f.accepted for f in world["forbidden"]] == before, head
        seen["answers"] += 1

    one()
    assert [f.accepted for f in world["forbidden"]] == [0, 0]
    assert seen["answers"] >= EXAMPLES  # every example ran (none filtered away)
    assert world["allowed"].accepted > 0  # the heads do reach what the rules allow
