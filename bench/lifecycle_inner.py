"""Runs ON a lab host (copied there by bench/lifecycle.py): times (a) bare
`docker run --rm --runtime=runsc`, (b) the API's ephemeral task, (c) the API's exec in an
existing sandbox, each REPS times; where the host has an outer container, also (e) bare
`docker run` and (f) the API's ephemeral task through its host-side socket (the double
sandbox). Prints JSON {name: [seconds, ...]}."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from sandbox import Sandboxes, SandboxSpec  # copied beside this file

IMAGE = "fortress/smoke:busybox"
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
OUTER_SOCKET = "/run/fortress/outer/default/docker.sock"


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
    if os.path.exists(OUTER_SOCKET):
        # The socket's directory belongs to the inner daemon's root (host root, or userns).
        owner = os.stat(os.path.dirname(OUTER_SOCKET)).st_uid
        outer = Sandboxes(socket_path=OUTER_SOCKET, socket_owner=owner, audit_log=None)
        outer_run = ["docker", "-H", f"unix://{OUTER_SOCKET}", *docker_run[1:]]
        out["outer_bare_docker_run"], out["outer_api_task"] = [], []
        for _ in range(REPS):
            bare = timed(lambda: subprocess.run(outer_run, check=True))
            out["outer_bare_docker_run"].append(bare)
            out["outer_api_task"].append(timed(lambda: outer.task(spec, ["true"])))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
