"""Fortress egress proxy: the only way out of an egress policy's internal Docker network.

An HTTP proxy (absolute-URI requests for http://, CONNECT tunnels for everything else) that
allows a request only when a rule of its policy names the target:
  - host rules (exact name, or *.domain for the names below it) and port: the request must
    name a host; an IP literal never matches a host rule;
  - address rules (CIDR and port): the request names an address in the network.
Every address a target resolves to, and every IPv4 address it carries (IPv4-mapped,
IPv4-compatible, 6to4, Teredo, ISATAP, NAT64 64:ff9b::/96), is checked against the deny list
(loopback, link-local and the metadata address, multicast, ...; never reopened) and the
non-public list (private ranges, CGNAT, ULA, documentation, the clouds' metadata; reopened
only by an address rule naming that address and port): a permitted name that resolves to
either is refused, and the proxy connects to exactly the address it checked (no second
lookup). Sandboxes get no DNS: names are resolved here, only for permitted requests.

Request heads are parsed by h11 (Debian's python3-h11, which the egress role installs; its
0.14.0-1.1 has CVE-2025-43859 fixed) behind a check of our own, since h11 itself reads a bare
LF as a line end and joins folded lines: a head with a bare CR or LF, a control byte or a
folded line is refused before h11 sees it, as is anything h11 refuses.

Usage: egress-proxy CONFIG.json   (written by the fortress.agents.egress role)
The standard library and h11 only: it runs on the host, outside every sandbox, under
`python3 -I`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import os
import re
import socket
import sys
import time
from typing import Any
from urllib.parse import urlsplit

try:
    import h11
except ImportError:  # pragma: no cover - the role installs it; said in one sentence
    sys.exit("egress-proxy: the h11 module is missing: install python3-h11 (the egress role does)")

IP_FREEBIND = 15  # linux/in.h: bind an address the bridge does not carry yet
IPV6_FREEBIND = 78  # linux/in6.h
MAX_HEAD = 16384
MAX_HEADER_LINES = 100  # the default of a head's header lines (what one head costs to parse)


# A host name as the allowlist check, DNS and the system resolver all read it: labels of
# ASCII letters, digits, '-' and '_' (not at a label's ends for '-'), 1 to 63 bytes each,
# 253 in all, and a last label that is not a number (the resolver reads 127.1, 0x7f000001
# or 2130706433 as addresses). Any other byte (a NUL, where the resolver's C string ends;
# whitespace; '%'; non-ASCII) is refused before any rule is read or any lookup is made.
LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
NUMERIC = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
VISIBLE = re.compile(r"[\x21-\x7e]+")  # RFC 9112: a request target is visible ASCII
DIGITS = re.compile(r"[0-9]{1,18}")
PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only (int() reads others, and 4,300+ fails)
MAX_ADDRESSES = 8  # of one name's answer, the first tried (all are checked)
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110: a method, a field name
# RFC 9110/9112: a field line is a token, a colon, then visible bytes, spaces and tabs; no
# bare CR or LF anywhere, no folded line. Anything else an upstream could split otherwise.
FIELD_LINE = re.compile(TOKEN.pattern + r":[\t\x20-\x7e\x80-\xff]*")


MAX_RECORD = 16384 + 2048  # a TLS record's body, with room for its protection overhead
# Extensions that hide the real server name: encrypted_client_hello, its drafts, and ESNI.
HIDES_THE_NAME = {0xFFCE, *range(0xFE00, 0xFE0E)}


class Refused(Exception):
    """A request the policy does not allow (403) or cannot serve (400, 502, 504)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address an IP literal names (brackets, IPv4-mapped IPv6 unwrapped), else None."""
    try:
        addr = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


NAT64 = ipaddress.ip_network("64:ff9b::/96")
COMPATIBLE = ipaddress.ip_network("::/96")
GLOBAL6 = ipaddress.ip_network("2000::/3")  # IPv6 global unicast: anything else is not public
ISATAP = (b"\x00\x00\x5e\xfe", b"\x02\x00\x5e\xfe")  # interface IDs carrying an IPv4


def embedded(ip: ipaddress.IPv6Address, prefix: ipaddress.IPv6Network) -> ipaddress.IPv4Address:
    """The IPv4 address a NAT64 prefix of length 32, 40, 48, 56, 64 or 96 embeds in `ip`
    (RFC 6052 2.2: right after the prefix, skipping bits 64 to 71)."""
    octets = [i for i in range(prefix.prefixlen // 8, 16) if i != 8][:4]
    return ipaddress.IPv4Address(bytes(ip.packed[i] for i in octets))


def carried(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, nat64: list[Any] | tuple[Any, ...] = (NAT64,)
) -> list[Any]:
    """The address and every IPv4 address it carries, each of which is checked: mapped,
    6to4, Teredo, IPv4-compatible, ISATAP, and each NAT64 prefix's (the well-known one and
    the host's own, `nat64`)."""
    forms: list[Any] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        forms += [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
        forms += list(ip.teredo or ())
        if ip in COMPATIBLE or ip.packed[8:12] in ISATAP:
            forms.append(ipaddress.IPv4Address(ip.packed[-4:]))
        forms += [embedded(ip, prefix) for prefix in nat64 if ip in prefix]
    return forms


def host_name(text: str) -> str:
    """The one spelling of a host name that is checked, resolved and logged (lower case,
    no trailing dot); one sentence for anything else."""
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if (
        len(name) > 253
        or not all(LABEL.fullmatch(label) for label in labels)
        or NUMERIC.fullmatch(labels[-1])
    ):
        raise Refused(
            400,
            f"{ascii(text)[1:-1][:100]} is not a host name (ASCII letters, digits, '-' and '_' "
            "in dot-separated labels of 1 to 63 characters, not ending in a number): send a "
            "host name or an IP literal",
        )
    return name.lower()


def hello_server_names(hello: bytes) -> list[str]:
    """The host names a TLS ClientHello handshake message (after its 4-byte header) names
    in its server_name extension ([] without one); Refused if it is malformed or hides its
    name (encrypted ClientHello)."""
    pos = 0

    def take(size: int) -> bytes:
        nonlocal pos
        if size < 0 or pos + size > len(hello):
            raise Refused(400, "a malformed TLS ClientHello in the tunnel")
        pos += size
        return hello[pos - size : pos]

    def number(size: int) -> int:
        return int.from_bytes(take(size), "big")

    take(2 + 32)  # version, random
    take(number(1))  # session id
    take(number(2))  # cipher suites
    take(number(1))  # compression methods
    names: list[str] = []
    if pos == len(hello):
        return names
    size = number(2)
    end = pos + size
    while pos < end:
        kind, data = number(2), take(number(2))
        if kind in HIDES_THE_NAME:
            raise Refused(403, "an encrypted ClientHello hides the server name in the tunnel")
        if kind == 0:  # server_name: a list of (type 0, name) filling the extension exactly
            listed = data[2:]
            if int.from_bytes(data[:2], "big") != len(listed):
                raise Refused(400, "a malformed TLS ClientHello in the tunnel")
            while listed:
                size = int.from_bytes(listed[1:3], "big")
                if len(listed) < 3 or listed[0] != 0 or 3 + size > len(listed):
                    raise Refused(400, "a malformed TLS ClientHello in the tunnel")
                names.append(listed[3 : 3 + size].decode("latin-1"))
                listed = listed[3 + size :]
    if pos != end or pos != len(hello):
        raise Refused(400, "a malformed TLS ClientHello in the tunnel")
    return names


class Policy:
    """The rules of one policy, from the role's configuration file (one per tenant and
    policy: the tenant whose network this proxy serves)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.name = config["policy"]
        self.tenant = config.get("tenant")
        self.hosts = {(r["host"], r["port"]) for r in config["rules"] if "host" in r}
        self.suffixes = [(r["suffix"], r["port"]) for r in config["rules"] if "suffix" in r]
        self.cidrs = [
            (ipaddress.ip_network(r["cidr"]), r["port"]) for r in config["rules"] if "cidr" in r
        ]
        self.deny = [ipaddress.ip_network(c) for c in config["deny"]]
        self.nonpublic = [ipaddress.ip_network(c) for c in config["nonpublic"]]
        self.exempt = [ipaddress.ip_network(c) for c in config["exempt"]]
        # NAT64 prefixes whose addresses carry an IPv4 address (RFC 6052): the well-known one
        # and the network's own, if it has one.
        self.nat64 = [NAT64, *(ipaddress.ip_network(c) for c in config.get("nat64", []))]

    def check_target(self, host: str, port: int) -> str:
        """Refuse a target no rule names (before any lookup); the target as checked (the
        address of an IP literal, else host_name's spelling), the only one used after."""
        addr = parse_ip(host)
        if addr is not None:
            if not any(addr in net and port == p for net, p in self.cidrs):
                raise Refused(
                    403,
                    f"{addr}:{port} is an IP literal no address rule allows: name a host the "
                    "policy allows",
                )
            return str(addr)
        name = host_name(host)
        if (name, port) in self.hosts:
            return name
        if any(name.endswith(suffix) and port == p for suffix, p in self.suffixes):
            return name
        raise Refused(403, f"{name}:{port} is not in the allow list")

    def check_address(self, host: str, addr: str, port: int) -> None:
        """Refuse an address on the deny list whatever named it, and one off the public
        Internet unless an address rule names it and the port (or it is exempt)."""
        ip = parse_ip(addr)
        forms = carried(ip, self.nat64) if ip is not None else []
        if not forms or any(f in net for f in forms for net in self.deny):
            raise Refused(403, f"{host} resolves to {addr}, a denied address")
        outside = (
            isinstance(ip, ipaddress.IPv6Address)
            and ip not in GLOBAL6
            and not any(ip in prefix for prefix in self.nat64)
        )
        if (outside or any(f in net for f in forms for net in self.nonpublic)) and not (
            any(ip in net and port == p for net, p in self.cidrs)
            or any(ip in net for net in self.exempt)
        ):
            raise Refused(
                403,
                f"{host} resolves to {addr}, which is not on the public Internet: an address "
                "rule of the policy must name it",
            )


async def resolve(policy: Policy, host: str, port: int) -> list[str]:
    """The addresses to try, each checked against the deny list."""
    literal = parse_ip(host)
    if literal is not None:
        policy.check_address(host, str(literal), port)
        return [str(literal)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(502, f"{host} does not resolve ({exc.strerror})") from exc
    addrs: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        policy.check_address(host, addr, port)  # one refused address refuses the name
        if addr not in addrs:
            addrs.append(addr)
    return addrs[:MAX_ADDRESSES]


def split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """host and port of 'host:port' or '[v6]:port'."""
    if authority.startswith("["):
        host, rest = authority[1:].partition("]")[::2]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, port_text = authority.rpartition(":")[::2] if ":" in authority else (authority, "")
    if not port_text:
        if default_port is None:
            raise Refused(400, f"CONNECT {authority}: give host:port")
        return host, default_port
    if not PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise Refused(400, f"{authority}: bad port")
    return host, int(port_text)


def body_length(fields: list[str]) -> int:
    """The bytes of body that follow a request head: its one Content-Length (0 without).
    A body framed any other way could end where the upstream would not, and what follows
    it would reach the upstream as a request the proxy never read."""
    pairs = [f.split(":", 1) for f in fields]  # FIELD_LINE: each has its colon
    names = [name.lower() for name, _value in pairs]
    lengths = [value.strip() for name, value in pairs if name.lower() == "content-length"]
    if "transfer-encoding" in names or len(lengths) > 1 or not all(map(DIGITS.fullmatch, lengths)):
        raise Refused(
            400,
            "a request body needs one Content-Length of digits (no Transfer-Encoding): "
            "send it with its length",
        )
    return int(lengths[0]) if lengths else 0


# Request header fields never forwarded: the Host (the URL's authority replaces it), the
# proxy's own, and hop-by-hop connection management (one request per connection).
DROPPED = {b"host", b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}


def precheck(head: bytes, max_lines: int = MAX_HEADER_LINES) -> int:
    """What h11 reads more leniently than an upstream might: each line must end in CRLF,
    hold no other CR, LF or control byte, and the request line be METHOD TARGET HTTP/1.x;
    a body is framed by one Content-Length (body_length, returned)."""
    text = head.decode("latin-1")
    line, rest = text.partition("\r\n")[::2]
    if rest.count("\n") > max_lines + 1:  # the head's last, empty line ends in one too
        raise Refused(
            400, f"more than {max_lines} header lines: send fewer (the proxy reads no more)"
        )
    parts = line.split(" ")
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise Refused(400, "malformed request line: not METHOD TARGET HTTP/1.x")
    if not VISIBLE.fullmatch(parts[1]):
        # A URL parser drops some of these bytes (tabs, newlines) and a resolver stops at
        # others (NUL): what is checked must be what was sent.
        raise Refused(400, f"{ascii(parts[1])[1:-1][:100]}: a request target is visible ASCII only")
    fields = [f for f in rest.split("\r\n") if f]
    bad = next((f for f in fields if not FIELD_LINE.fullmatch(f)), None)
    if bad is not None:
        raise Refused(
            400,
            f"malformed request head ({ascii(bad)[1:-1][:80]}): each header line is NAME: value, "
            "with no bare CR or LF and no folded line",
        )
    return body_length(fields)


def parse_head(
    head: bytes, max_lines: int = MAX_HEADER_LINES
) -> tuple[str, str, int, bytes | None, int]:
    """(method, host, port, request to send upstream and the length of its body; None and
    0 for CONNECT). The head is checked (precheck), then parsed by h11; what goes upstream
    is written from h11's parsed fields, never from the client's bytes."""
    length = precheck(head, max_lines)
    reader = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        reader.receive_data(head)
        request = reader.next_event()
    except h11.ProtocolError as exc:
        reason = ascii(str(exc))[1:-1][:100]
        raise Refused(
            400,
            f"not a valid HTTP request head ({reason}): send one (HTTP/1.1 needs a Host header)",
        ) from exc
    if not isinstance(request, h11.Request):
        raise Refused(400, "incomplete request head")
    method, target = request.method.decode("ascii"), request.target.decode("ascii")
    version = "HTTP/" + request.http_version.decode("ascii")
    headers = list(request.headers.raw_items())
    if method == "CONNECT":
        host, port = split_authority(target, None)
        return method, host, port, None, 0
    try:
        url = urlsplit(target)
    except ValueError as exc:
        raise Refused(400, f"{ascii(target)[1:-1][:100]}: not a URL") from exc
    if url.scheme != "http" or not url.netloc:
        raise Refused(
            400, f"{target[:80]}: send http:// URLs in absolute form, tunnel the rest with CONNECT"
        )
    host, port = split_authority(url.netloc.rpartition("@")[2], 80)
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    # Host is the URL's authority as the policy checks it (check_target's spelling: a name in
    # lower case without a trailing dot, an address in canonical form), whatever the client
    # wrote: a different Host header would reach another site served from an allowed name's
    # address (a CDN's, say).
    addr = parse_ip(host)
    checked = host_name(host) if addr is None else f"[{addr}]" if addr.version == 6 else str(addr)
    authority = checked if port == 80 else f"{checked}:{port}"
    kept = [b"%s: %s" % (name, value) for name, value in headers if name.lower() not in DROPPED]
    first = [f"{method} {path} {version}".encode(), f"Host: {authority}".encode()]
    upstream = b"\r\n".join([*first, *kept, b"Connection: close", b"", b""])
    return method, host, port, upstream, length


class Proxy:
    def __init__(self, config: dict[str, Any]) -> None:
        self.policy = Policy(config)
        self.connect_timeout = float(config.get("connect_timeout", 10))
        self.idle_timeout = float(config.get("idle_timeout", 300))
        # Slots of the whole proxy, taken only by a request whose head was read and allowed;
        # each client address (one outer container: one tenant) holds at most max_per_client
        # connections of any kind, so no tenant's silent or held connections starve another.
        self.clients = asyncio.Semaphore(int(config.get("max_clients", 256)))
        self.per_client = int(config.get("max_per_client", 64))
        # Requests allowed but waiting for a slot: at most max_waiting, each for at most
        # head_timeout (the deadline of a request's head too); beyond either, 503.
        self.head_timeout = float(config.get("head_timeout", 10))
        self.max_header_lines = int(config.get("max_header_lines", MAX_HEADER_LINES))
        self.max_waiting = int(config.get("max_waiting", 256))
        self.waiting = 0
        # The longest a tunnel or a request may last, however busy both sides are.
        self.max_lifetime = float(config.get("max_lifetime", 3600))
        self.close_grace = float(config.get("close_grace", 10))
        # Lookups run in lookup_threads threads of the proxy's own; one client has at most
        # max_lookups in progress.
        self.max_lookups = int(config.get("max_lookups_per_client", 4))
        self.lookups: dict[str, int] = {}
        self.open: dict[str, int] = {}
        self.counts: dict[str, Any] = {"allow": 0, "deny": 0, "status": {}}

    def log(self, decision: str, client: str, target: str, **fields: Any) -> None:
        """One JSON line per decision (json escapes every control byte a client sent, so no
        client field starts a line of its own), counted for the counters file."""
        print(json.dumps({"decision": decision, "policy": self.policy.name,
                          "tenant": self.policy.tenant, "client": client, "target": target,
                          **fields}), flush=True)  # fmt: skip
        self.counts[decision] = self.counts.get(decision, 0) + 1
        if "status" in fields:
            key = str(fields["status"])
            self.counts["status"][key] = self.counts["status"].get(key, 0) + 1

    def deny(self, client: str, target: str, refused: Refused) -> None:
        self.log("deny", client, target, status=refused.status, reason=refused.reason)

    async def keep_counts(self, path: str, every: float = 1.0) -> None:
        """Write the decision counts to path (whole, by rename) each time they changed, at
        most once a second: journald's rate limit can drop log lines, never these."""
        written: dict[str, Any] = {}
        failed = False
        while True:
            if self.counts != written:
                counts = json.loads(json.dumps(self.counts))
                try:
                    tmp = f"{path}.tmp"
                    with open(tmp, "w", encoding="utf-8") as out:
                        head = {"policy": self.policy.name, "tenant": self.policy.tenant}
                        json.dump({**head, **counts}, out)
                    os.replace(tmp, path)
                    written, failed = counts, False
                except OSError as exc:  # the proxy serves on; the next second tries again
                    if not failed:
                        why = f"cannot write {path} ({exc.strerror}); retrying"
                        print(f"egress proxy {self.policy.name}: {why}", file=sys.stderr)
                    failed = True
            await asyncio.sleep(every)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = str(writer.get_extra_info("peername", ("?",))[0])
        if self.open.get(client, 0) >= self.per_client:
            refused = Refused(
                503,
                f"{self.per_client} connections from {client} are open already (its share of "
                "this proxy): close some, or reuse them",
            )
            await self.finish(writer, client, "?", refused)
            return
        self.open[client] = self.open.get(client, 0) + 1
        try:
            await self.serve_one(reader, writer, client)
        finally:
            self.open[client] -= 1
            if not self.open[client]:
                del self.open[client]

    async def serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> None:
        target = "?"
        refused = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
            except (
                TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError
            ) as exc:  # fmt: skip
                raise Refused(400, "incomplete or oversized request head") from exc
            method, host, port, upstream, length = parse_head(head, self.max_header_lines)
            target = f"{ascii(host)[1:-1][:100]}:{port}"  # hostile bytes escaped in logs
            host = self.policy.check_target(host, port)
            target = f"{host}:{port}"
            async with self.admitted():
                addrs = await self.lookup(client, host, port)
                up_reader, up_writer, addr = await self.connect(host, addrs, port)
                self.log("allow", client, target, method=method, address=addr)
                if upstream is None:
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    to_upstream = self.tunnel(reader, up_writer, host, client, target)
                else:
                    # One request: its head as rewritten, then its body, and nothing after
                    # (a request pipelined behind it is never read, never forwarded).
                    up_writer.write(upstream)
                    to_upstream = self.body(reader, up_writer, length)
                both = [asyncio.ensure_future(to_upstream),
                        asyncio.ensure_future(self.pipe(up_reader, writer))]  # fmt: skip
                # A request ends once its response is through; a tunnel when the upstream
                # ends, or close_grace seconds after its client closed its side (the answer
                # to what it sent may still come; the client is not held, with its slot,
                # until the upstream closes). Neither outlives max_lifetime.
                ends = asyncio.FIRST_COMPLETED if upstream is None else asyncio.ALL_COMPLETED
                lifetime = time.monotonic() + self.max_lifetime
                try:
                    done, pending = await asyncio.wait(both, timeout=self.max_lifetime,
                                                       return_when=ends)  # fmt: skip
                    if both[0] in done and pending:
                        grace = min(self.close_grace, lifetime - time.monotonic())
                        done |= (await asyncio.wait(pending, timeout=max(grace, 0)))[0]
                    for side in done:
                        side.exception()  # retrieved: a refusal in the tunnel is logged there
                finally:
                    for side in both:  # one side ended, refused or failed: the other stops
                        side.cancel()
                    up_writer.close()
        except Refused as exc:
            refused = exc
        except (ConnectionError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - a head no check foresaw: answered, logged
            refused = Refused(400, f"a request the proxy cannot read ({exc.__class__.__name__})")
        await self.finish(writer, client, target, refused)

    async def lookup(self, client: str, host: str, port: int) -> list[str]:
        """resolve(), at most max_lookups at once per client and within connect_timeout: a
        tenant whose own names never resolve fills neither the lookup threads nor anyone's
        wait (a lookup that timed out still counts until its thread is done)."""
        if self.lookups.get(client, 0) >= self.max_lookups:
            raise Refused(503, f"{self.max_lookups} lookups of {client} are in progress already")
        self.lookups[client] = self.lookups.get(client, 0) + 1
        task = asyncio.ensure_future(resolve(self.policy, host, port))

        def done(_task: asyncio.Future[Any]) -> None:
            self.lookups[client] -= 1
            if not self.lookups[client]:
                del self.lookups[client]
            if not _task.cancelled():
                _task.exception()  # retrieved here when the caller stopped waiting

        task.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.connect_timeout)
        except TimeoutError as exc:
            raise Refused(502, f"{host} did not resolve within {self.connect_timeout:g} s") from exc

    @contextlib.asynccontextmanager
    async def admitted(self) -> Any:
        """One of the proxy's slots, for a request whose head was read and allowed; 503 when
        max_waiting requests wait already, or the wait passes head_timeout."""
        if self.waiting >= self.max_waiting:
            raise Refused(503, f"{self.waiting} requests wait for this proxy already: try later")
        self.waiting += 1
        try:
            await asyncio.wait_for(self.clients.acquire(), self.head_timeout)
        except TimeoutError as exc:
            raise Refused(503, f"no slot of this proxy came free in {self.head_timeout:g} s: "
                               "try later") from exc  # fmt: skip
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self.clients.release()

    async def finish(
        self, writer: asyncio.StreamWriter, client: str, target: str, refused: Refused | None
    ) -> None:
        """Send the refusal, if any (logged, one sentence), and close the connection."""
        try:
            if refused is not None:
                self.deny(client, target, refused)
                body = f"fortress egress policy {self.policy.name}: {refused.reason}\n".encode()
                reason = "Forbidden" if refused.status == 403 else "Refused"
                writer.write(
                    f"HTTP/1.1 {refused.status} {reason}\r\n"
                    f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                    "X-Fortress-Egress: denied\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def connect(self, host: str, addrs: list[str], port: int) -> tuple[Any, Any, str]:
        errors = []
        for addr in addrs:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(addr, port), self.connect_timeout
                )
                return reader, writer, addr
            except (TimeoutError, OSError) as exc:
                errors.append(f"{addr}: {exc.__class__.__name__}")
        raise Refused(502, f"{host}:{port} did not accept a connection ({', '.join(errors)})")

    async def body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   length: int) -> None:  # fmt: skip
        """Copy exactly length bytes of request body."""
        try:
            while length > 0:
                data = await asyncio.wait_for(reader.read(min(65536, length)), self.idle_timeout)
                if not data:
                    break
                length -= len(data)
                writer.write(data)
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
        except (TimeoutError, ConnectionError, OSError):
            writer.close()

    async def tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     host: str, client: str, target: str) -> None:  # fmt: skip
        """The client's side of a CONNECT tunnel. When it starts with TLS, every record up to
        the client's first application data is read whole before it goes upstream, and each
        ClientHello among them (a second one follows a HelloRetryRequest) must name the
        CONNECT host or none: a tunnel to an allowed name never carries TLS for another host
        on the same address (domain fronting by SNI). Other protocols are not looked into."""
        try:
            kind = await asyncio.wait_for(reader.read(1), self.idle_timeout)
            first = True
            while kind in (b"\x16", b"\x14", b"\x15") and (kind == b"\x16" or not first):
                header = kind + await asyncio.wait_for(reader.readexactly(4), 30)
                size = int.from_bytes(header[3:5], "big")
                if size > MAX_RECORD:
                    raise Refused(400, "a malformed TLS record in the tunnel")
                body = await asyncio.wait_for(reader.readexactly(size), 30)
                is_hello = body[:1] == b"\x01" and int.from_bytes(body[1:4], "big") == size - 4
                if first and not is_hello:
                    raise Refused(400, "a TLS ClientHello not in one record of its own")
                if kind == b"\x16" and is_hello:
                    named = [n.lower().rstrip(".") for n in hello_server_names(body[4:])]
                    if named and named != [host]:
                        raise Refused(403, f"the tunnel's TLS names {ascii(named)[1:-1][:100]}, "
                                           f"not {host}")  # fmt: skip
                writer.write(header + body)
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
                first = False
                kind = await asyncio.wait_for(reader.read(1), self.idle_timeout)
            if not kind:
                raise ConnectionError("the client closed the tunnel")
            writer.write(kind)
        except Refused as exc:
            self.deny(client, target, exc)
            writer.close()
            raise ConnectionError(exc.reason) from exc
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            writer.close()
            return
        await self.pipe(reader, writer)

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
                if not data:
                    break
                writer.write(data)
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
            if writer.can_write_eof():
                writer.write_eof()
        except (TimeoutError, ConnectionError, OSError):
            writer.close()


def listen_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.bind((address, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(config: dict[str, Any]) -> None:
    proxy = Proxy(config)
    threads = int(config.get("lookup_threads", 32))
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="lookup")
    )
    servers = [
        await asyncio.start_server(
            proxy.handle, sock=listen_socket(a, config["port"]), limit=MAX_HEAD
        )
        for a in config["listen"]
    ]
    print(f"policy {proxy.policy.name}: listening on "
          + ", ".join(f"{a}:{config['port']}" for a in config["listen"]), flush=True)  # fmt: skip
    counting = [proxy.keep_counts(config["counters"])] if config.get("counters") else []
    await asyncio.gather(*(s.serve_forever() for s in servers), *counting)


def resolve_names_as_given() -> None:
    """glibc's resolver looks a name that does not resolve up again with the host's search
    domains appended (resolv.conf `search`): under a `*.domain` rule a tenant's NXDOMAIN
    would reach an internal name's address that no rule names. An empty LOCALDOMAIN
    replaces that list with none (resolv.conf(5)); /etc/hosts names resolve as before. No
    alias file (HOSTALIASES) and no options from the environment (RES_OPTIONS) either."""
    os.environ["LOCALDOMAIN"] = ""
    os.environ.pop("HOSTALIASES", None)
    os.environ.pop("RES_OPTIONS", None)


def main(argv: list[str]) -> int:
    resolve_names_as_given()
    if len(argv) != 2:
        print("usage: egress-proxy CONFIG.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"egress proxy {config.get('policy')}: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
