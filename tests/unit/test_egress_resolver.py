"""The egress proxy's lookups and the host resolver's search list (issue 17: one view of every
name). A name that does not resolve must not be looked up again with the host's search
domains appended: under a `*.domain` rule, a tenant's NXDOMAIN would otherwise reach the
address of an internal name (nx.allowed.test.corp.internal) that no rule names.

The real proxy process runs in a mount and network namespace of its own (unshare), with a
resolv.conf naming a search domain and a DNS server of the test's, on its loopback, that
logs every question and answers NXDOMAIN."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROXY = ROOT / "roles" / "egress" / "files" / "egress-proxy.py"

# A DNS server on 127.0.0.1:53 (UDP) that writes each question's name to a file, one per
# line, and answers NXDOMAIN.
DNS = r"""
import socket, sys
log = open(sys.argv[1], "a", buffering=1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    packet, peer = sock.recvfrom(4096)
    labels, at = [], 12
    while packet[at]:
        labels.append(packet[at + 1 : at + 1 + packet[at]].decode("ascii", "replace"))
        at += 1 + packet[at]
    log.write(".".join(labels) + "\n")
    question = packet[12 : at + 5]
    sock.sendto(packet[:2] + b"\x81\x83\x00\x01\x00\x00\x00\x00\x00\x00" + question, peer)
"""

# In the namespaces: loopback up, our resolv.conf and an /etc/hosts naming nothing else,
# the DNS server, then the proxy; a CONNECT to a permitted name that does not resolve.
SCRIPT = r"""
set -e
ip link set lo up
mount --bind "$TMP/resolv.conf" /etc/resolv.conf
mount --bind "$TMP/hosts" /etc/hosts
"$PY" "$TMP/dns.py" "$TMP/questions" > "$TMP/dns.out" 2>&1 &
"$PY" -I "$PROXY" "$TMP/config.json" > "$TMP/proxy.out" 2>&1 &
for _ in $(seq 100); do
  grep -q ready "$TMP/dns.out" && grep -q listening "$TMP/proxy.out" && break
  sleep 0.05
done
exec "$PY" -c '
import socket
for name in ("nx.allowed.test", "hosts.allowed.test"):
    with socket.create_connection(("127.0.0.1", 3128), timeout=30) as conn:
        conn.sendall(b"CONNECT %s:443 HTTP/1.1\r\nHost: h\r\n\r\n" % name.encode())
        print(conn.recv(4096).decode().splitlines()[-1])
'
"""


def test_a_name_that_does_not_resolve_is_not_looked_up_with_the_search_list(
    tmp_path: Path,
) -> None:
    (tmp_path / "dns.py").write_text(DNS)
    (tmp_path / "resolv.conf").write_text(
        "nameserver 127.0.0.1\nsearch corp.internal\noptions attempts:1 timeout:1\n"
    )
    # A name /etc/hosts gives: it still resolves (nothing listens there, so a 502 that
    # says so, not one that says it does not resolve).
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 hosts.allowed.test\n")
    config = {
        "policy": "dns", "listen": ["127.0.0.1"], "port": 3128, "deny": [], "nonpublic": [],
        "exempt": [], "rules": [{"suffix": ".allowed.test", "port": 443}],
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMP": str(tmp_path), "PY": sys.executable,
           "PROXY": str(PROXY)}  # fmt: skip
    done = subprocess.run(
        # A PID namespace too: when the client (its last process, exec'd) ends, the kernel
        # ends the DNS server and the proxy with it.
        ["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private",
         "sh", "-c", SCRIPT],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout == "", f"processes left behind: {left.stdout}"
    asked = tmp_path / "questions"
    questions = asked.read_text().split() if asked.exists() else []
    answers = done.stdout.splitlines()
    assert done.returncode == 0 and len(answers) == 2, (
        done.stdout, done.stderr, (tmp_path / "proxy.out").read_text())  # fmt: skip
    assert "nx.allowed.test does not resolve" in answers[0], answers
    assert "hosts.allowed.test:443 did not accept a connection" in answers[1], answers
    # The control: the server was asked, so a lookup through the search list would show.
    assert "nx.allowed.test" in questions, questions
    assert all(q == "nx.allowed.test" for q in questions), questions
