#!/usr/bin/env python3
"""outer-variant BASE KIND ITEM: run a copy of the outer container BASE with one thing taken
away, and report (one JSON line) whether the double sandbox still works in it.

KIND is `cap` (ITEM: a capability the copy does not get), `syscall` (ITEM: a syscall removed
from the seccomp rules Fortress adds to Docker's default profile) or `none` (an exact copy:
the control that shows the probe works). Runs on a lab host, next to BASE, with the Docker
SDK. The copy gets a fresh volume and socket directory and no network, and is always removed.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
import time

import docker

SMOKE_IMAGE = "fortress/smoke:busybox"
# What a real agent image has and the smoke image lacks: a layer with a file owned by
# another user and a file deleted from a lower layer (a whiteout). Built on the lab host
# (runc), loaded into the copy's inner daemon like any image.
LAYERS_IMAGE = "fortress/smoke:layers"
LAYERS_DOCKERFILE = b"""FROM fortress/smoke:busybox
RUN mkdir -p /home/agent && echo notes > /home/agent/notes && chown -R 1000:1000 /home/agent \\
    && rm /bin/vi
"""
# The agent task, run the way the sandbox modules run one (fortress sandbox library).
TASK = "test ! -e /bin/vi && stat -c %u /home/agent/notes && cat /home/agent/notes"
START_TIMEOUT = 60
sys.path.insert(0, "/usr/local/lib/fortress")


def variant_host_config(info: dict, kind: str, item: str) -> dict:
    host = dict(info["HostConfig"])
    if kind == "cap":
        caps = [c.removeprefix("CAP_") for c in host.get("CapAdd") or []]
        if item not in caps:
            raise SystemExit(f"{item} is not among the capabilities of the base: {caps}")
        host["CapAdd"] = [c for c in caps if c != item]
    elif kind == "syscall":
        opts = host.get("SecurityOpt") or []
        seccomp = [o for o in opts if o.startswith("seccomp=")]
        profile = json.loads(seccomp[0].removeprefix("seccomp="))
        added = profile["syscalls"][-1]  # the rule Fortress appends
        if item not in added["names"]:
            raise SystemExit(f"{item} is not among the added syscalls: {added['names']}")
        added["names"] = [n for n in added["names"] if n != item]
        if not added["names"]:
            profile["syscalls"].pop()
        host["SecurityOpt"] = [o for o in opts if not o.startswith("seccomp=")] + [
            "seccomp=" + json.dumps(profile)
        ]
    elif kind != "none":
        raise SystemExit(f"unknown kind {kind}: use cap, syscall or none")
    return host


def main() -> int:
    base, kind, item = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
    api = docker.APIClient()
    info = api.inspect_container(base)
    host = variant_host_config(info, kind, item)
    name = f"{base}-variant"
    volume = f"{name}-docker"
    sockdir = tempfile.mkdtemp(prefix="fortress-variant-")
    binds = []
    for bind in host.get("Binds") or []:
        dst = bind.split(":", 2)[1]
        if dst == "/var/lib/docker":
            bind = f"{volume}:/var/lib/docker"
        elif dst == "/run/fortress":
            bind = f"{sockdir}:/run/fortress"
        binds.append(bind)
    host.update(
        Binds=binds, RestartPolicy={"Name": "no"}, NetworkMode="none", PortBindings={}, Links=None
    )
    result = {"kind": kind, "item": item, "ok": False, "stage": "create", "detail": ""}
    try:
        api.create_volume(volume)
        container = api.create_container(
            image=info["Config"]["Image"],
            entrypoint=info["Config"]["Entrypoint"],
            command=info["Config"]["Cmd"],
            environment=info["Config"]["Env"],
            name=name,
            host_config=host,
        )
        api.start(container["Id"])
        result["stage"] = "inner dockerd"
        inner = None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                inner = docker.APIClient(base_url=f"unix://{sockdir}/docker.sock", timeout=30)
                inner.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                inner = None
                if api.inspect_container(name)["State"]["Status"] != "running":
                    break
                time.sleep(0.5)
        if inner is None:
            logs = api.logs(name, tail=5).decode(errors="replace")
            result["detail"] = logs.strip().splitlines()[-1:] if logs.strip() else ""
            return report(result)
        result["stage"] = "load image"
        docker.from_env().images.build(
            fileobj=io.BytesIO(LAYERS_DOCKERFILE), tag=LAYERS_IMAGE, rm=True, forcerm=True
        )
        for chunk in inner.load_image(b"".join(api.get_image(LAYERS_IMAGE))) or []:
            if isinstance(chunk, dict) and chunk.get("error"):
                raise RuntimeError(f"docker load failed: {chunk['error']}")
        result["stage"] = "sandbox"
        from sandbox import Sandboxes, SandboxSpec  # the library the modules run

        boxes = Sandboxes(socket_path=f"{sockdir}/docker.sock", audit_log=None)
        done = boxes.task(SandboxSpec(image=LAYERS_IMAGE, owner="outer-variant"),
                          ["/bin/sh", "-c", TASK], timeout=60)  # fmt: skip
        out = (
            done.stdout.decode(errors="replace") if isinstance(done.stdout, bytes) else done.stdout
        )
        result["ok"] = done.rc == 0 and out.split() == ["1000", "notes"]
        result["detail"] = f"rc={done.rc} output={out.strip()[:200]}"
        result["stage"] = "done"
    except Exception as exc:  # noqa: BLE001 - reported, the copy is removed below
        result["detail"] = f"{type(exc).__name__}: {getattr(exc, 'explanation', None) or exc}"[:400]
    finally:
        try:
            api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass
        try:
            api.remove_volume(volume, force=True)
        except docker.errors.NotFound:
            pass
        shutil.rmtree(sockdir, ignore_errors=True)
    return report(result)


def report(result: dict) -> int:
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
