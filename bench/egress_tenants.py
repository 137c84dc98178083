"""Benchmark: one tenant's busy flood against another tenant's egress, with one proxy shared
by both tenants (the layout before each tenant had a proxy of its own) and with a proxy each
(not a test: it prints, it never fails CI).

On loopback, as the hosts run it: each proxy a process of its own (`python -I
egress-proxy.py CONFIG`), one upstream HTTP server. The flooder (127.0.0.2, in a process of
its own) keeps --flood connections busy with small requests the proxy refuses (the attack
review's load: refused requests cost the proxy a parse and a log line each); the measured
tenant (127.0.0.3) sends --requests allowed requests, one connection each. Cases, interleaved
in each round (--rounds):
  (a) no flood                                          (the baseline)
  (b) the flooder on the measured tenant's own proxy    (one proxy for every tenant)
  (c) the flooder on a proxy of its own                 (a proxy per tenant and policy)
Printed as medians of the rounds' p50 and p99 and as ratios to (a); saved as JSON in
bench/results/.

    PYTHONPATH=tools .venv/bin/python bench/egress_tenants.py [--rounds 3] [--flood 60]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fortress_lab import egress_loopback as loopback

ROOT = Path(__file__).resolve().parents[1]
FLOODER, MEASURED = "127.0.0.2", "127.0.0.3"


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


def start_proxy(tmp: Path, name: str, upstream: int) -> tuple[subprocess.Popen, int]:
    config = {
        "policy": "bench", "tenant": name, "deny": [], "nonpublic": [], "exempt": [],
        "rules": [{"host": "localhost", "port": upstream}],
    }  # fmt: skip
    return loopback.start_proxy(config, tmp / f"{name}.json")


def flooder(port: int, connections: int, stop: multiprocessing.Event) -> None:
    def loop() -> None:
        while not stop.is_set():
            try:
                loopback.ask(port, FLOODER, "http://denied.example/")
            except OSError:
                time.sleep(0.01)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    stop.wait()


def measure(port: int, upstream: int, requests: int) -> tuple[float, float]:
    """(p50, p99) in ms of the measured tenant's allowed requests, one connection each."""
    times = []
    for n in range(requests):
        seconds, status, _body = loopback.ask(port, MEASURED, f"http://localhost:{upstream}/{n}")
        times.append(seconds * 1000)
        if status != 200:
            raise SystemExit(f"the measured tenant's request {n} got {status}")
    cuts = statistics.quantiles(times, n=100)
    return cuts[49], cuts[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=60, help="the flooder's busy connections")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = server.server_address[1]
    cases = {"no flood": None, "one proxy for both": "own", "a proxy each": "other"}
    got: dict[str, list[tuple[float, float]]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        own, own_port = start_proxy(Path(tmp), "measured", upstream)
        other, other_port = start_proxy(Path(tmp), "flooder", upstream)
        try:
            for n in range(args.rounds):
                for case, where in cases.items():
                    stop = multiprocessing.Event()
                    flood = None
                    if where:
                        port = own_port if where == "own" else other_port
                        flood = multiprocessing.Process(
                            target=flooder, args=(port, args.flood, stop), daemon=True
                        )
                        flood.start()
                        time.sleep(1)  # the flood at full speed before measuring
                    try:
                        got[case].append(measure(own_port, upstream, args.requests))
                    finally:
                        stop.set()
                        if flood:
                            flood.join(timeout=30)
                    print(f"round {n + 1} {case}: p50 {got[case][-1][0]:.2f} ms, "
                          f"p99 {got[case][-1][1]:.2f} ms", flush=True)  # fmt: skip
        finally:
            for proc in (own, other):
                proc.terminate()
                proc.wait(timeout=10)
    quiet = got["no flood"]
    base = {
        "p50": statistics.median(r[0] for r in quiet),
        "p99": statistics.median(r[1] for r in quiet),
    }
    rows = []
    print(f"\n{args.flood} busy connections of refused requests; {args.requests} allowed "
          f"requests measured per case, {args.rounds} rounds, medians:")  # fmt: skip
    print(f"{'case':<22} {'p50 ms':>8} {'x':>6} {'p99 ms':>8} {'x':>6}")
    for case, runs in got.items():
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        rows.append({"case": case, "p50_ms": p50, "p99_ms": p99,
                     "p50_x": p50 / base["p50"], "p99_x": p99 / base["p99"]})  # fmt: skip
        print(f"{case:<22} {p50:>8.2f} {p50 / base['p50']:>6.2f} {p99:>8.2f} "
              f"{p99 / base['p99']:>6.2f}")  # fmt: skip
    out = ROOT / "bench/results" / f"egress-tenants-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"flood": args.flood, "requests": args.requests,
                               "rounds": args.rounds, "rows": rows}, indent=2))  # fmt: skip
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
