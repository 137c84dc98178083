"""Runs ON a lab host (copied there by bench/lifecycle.py): times (a) bare
`docker run --rm --runtime=runsc`, (b) the API's ephemeral task, (c) the API's exec in an
existing sandbox, each REPS times, and prints JSON {name: [seconds, ...]}."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from sandbox import Sandboxes, SandboxSpec  # copied beside this file

IMAGE = "fortress/smoke:busybox"
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    boxes = Sandboxes(audit_log=None)
    spec = SandboxSpec(image=IMAGE, owner="bench")
    docker_run = ["docker", "run", "--rm", "--runtime=runsc", "--network=none", IMAGE, "true"]
    out: dict[str, list[float]] = {"bare_docker_run": [], "api_task": [], "api_exec": []}
    for _ in range(REPS):
        out["bare_docker_run"].append(timed(lambda: subprocess.run(docker_run, check=True)))
        out["api_task"].append(timed(lambda: boxes.task(spec, ["true"])))
    keep = SandboxSpec(image=IMAGE, owner="bench", name="bench-exec",
                       command=["/bin/sh", "-c", "sleep 2147483647"])  # fmt: skip
    boxes.create(keep)
    try:
        for _ in range(REPS):
            out["api_exec"].append(timed(lambda: boxes.exec("bench-exec", ["true"])))
    finally:
        boxes.remove("bench-exec")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
