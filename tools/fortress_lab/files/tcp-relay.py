"""Relay one connection between standard input/output and 127.0.0.1:PORT.

QEMU runs it for each connection a restricted VM opens to a `guestfwd=...-cmd:` address (the
lab's way to the machine's apt cache): the guest's bytes arrive on stdin, the answer goes
to stdout. Loopback only, one connection, ends when either side closes.

    python3 tcp-relay.py PORT
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

CHUNK = 65536


def main() -> int:
    port = int(sys.argv[1])
    upstream = socket.create_connection(("127.0.0.1", port), timeout=30)
    upstream.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "guest")
    selector.register(upstream, selectors.EVENT_READ, "upstream")
    while True:
        for key, _ in selector.select():
            if key.data == "guest":
                data = os.read(0, CHUNK)
                if not data:
                    upstream.shutdown(socket.SHUT_WR)
                    selector.unregister(0)
                    continue
                upstream.sendall(data)
            else:
                data = upstream.recv(CHUNK)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]


if __name__ == "__main__":
    raise SystemExit(main())
