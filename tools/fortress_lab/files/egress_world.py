"""The egress tests' world, run on a lab host (container or VM) as root: HTTP servers that
answer with their own name, DNS resolvers, and a service on the host's own addresses.
Every request is appended to HITS, so a test can tell "refused" from "never arrived".
Nothing here talks to anything beyond the host. Started by fortress_lab.egress.world_up,
twice: `world.py HITS remote` in the world's network namespace (the "internet" behind the
host's fw-world interface) and `world.py HITS host` on the host itself."""

import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

HITS, SIDE = sys.argv[1], sys.argv[2]
# (name, address, port) by side. remote: addresses in the world's namespace. host: every
# address of the host (the gateways of the policies' networks included).
SERVERS = {
    "remote": [
        ("api", "198.51.100.10", 80),
        ("forbidden", "198.51.100.20", 80),
        ("cidr", "198.51.100.30", 8080),
        ("cidr-other-port", "198.51.100.30", 8081),
        ("metadata", "169.254.169.254", 80),
        ("private", "10.99.0.10", 80),
        ("api6", "2001:db8:f0::10", 80),
        ("cidr6", "2001:db8:f0::30", 8080),
    ],
    "host": [("host-service", "0.0.0.0", 18081), ("host-service6", "::", 18081)],  # noqa: S104
}[SIDE]
RESOLVERS = [(f"resolver-{SIDE}", "0.0.0.0", 53), (f"resolver6-{SIDE}", "::", 53)]  # noqa: S104
lock = threading.Lock()


def hit(name: str, client: str, what: str) -> None:
    with lock, open(HITS, "a", encoding="utf-8") as log:
        log.write(f"{name} {client} {what}\n")


def http(name: str, family: int) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hit(name, self.client_address[0], self.path)
            body = f"world:{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(HTTPServer):
        address_family = family

        def server_bind(self) -> None:
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # Not HTTPServer's: its getfqdn() waits on DNS, which the world does not have.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = "world", self.server_address[1]

    return Server, Handler


def dns(name: str, family: int, address: str, port: int) -> socketserver.UDPServer:
    """Answers every A query with 198.51.100.99 (a resolver that would leak names)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            query, sock = self.request
            hit(name, self.client_address[0], query[12:40].hex())
            question_end = query.index(b"\0", 12) + 5
            answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([198, 51, 100, 99])
            head = query[:2] + b"\x81\x80" + query[4:6] + b"\x00\x01\x00\x00\x00\x00"
            sock.sendto(head + query[12:question_end] + answer, self.client_address)

    class Server(socketserver.ThreadingUDPServer):
        address_family = family
        allow_reuse_address = True

        def server_bind(self) -> None:
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            super().server_bind()

    return Server((address, port), Handler)


def main() -> None:
    threads = []
    for name, address, port in SERVERS:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        server_class, handler = http(name, family)
        server = server_class((address, port), handler)
        threads.append(threading.Thread(target=server.serve_forever, daemon=True))
    for name, address, port in RESOLVERS:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        server = dns(name, family, address, port)
        threads.append(threading.Thread(target=server.serve_forever, daemon=True))
    for thread in threads:
        thread.start()
    print("world ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
