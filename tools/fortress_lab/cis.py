"""CIS Docker Benchmark daemon items checked by behaviour, against any Docker daemon.

A `DockerTarget` is a daemon reached by running the docker CLI on a host (a lab host's
own dockerd, or an outer container's inner dockerd through its host-side socket): one
implementation of each check, several targets. Each check returns what it observed,
including a control that shows the probe can see the weakness, so tests assert on outcomes.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

# Where a daemon's containerd keeps its containers' OCI bundles: the host's, and an inner
# daemon's inside its outer container (its own containerd).
BUNDLES = "/run/containerd/io.containerd.runtime.v2.task/moby"
INNER_BUNDLES = "/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby"
SMOKE_IMAGE = "fortress/smoke:busybox"  # built by the gvisor role (tasks_from: verify)
BUSYBOX = "/bin/busybox"


class _Result(Protocol):
    rc: int
    stdout: str
    stderr: str


class _Host(Protocol):
    def run(self, command: str, *args: Any) -> _Result: ...


@dataclass
class DockerTarget:
    host: _Host
    docker: str = "docker"
    image: str = SMOKE_IMAGE
    # Options every `docker run` of a check gets, e.g. ("--runtime", "runsc").
    run_options: tuple[str, ...] = ()
    # A command prefix that runs a command where the daemon keeps its files ("": the host),
    # and the directory of its containers' OCI bundles there.
    files: str = ""
    bundles: str = BUNDLES

    def run(self, *argv: str) -> _Result:
        if argv[:1] == ("run",):
            argv = ("run", *self.run_options, *argv[1:])
        return self.host.run(" ".join([self.docker, *map(shlex.quote, argv)]))

    def ok(self, *argv: str) -> str:
        result = self.run(*argv)
        if result.rc != 0:
            raise AssertionError(f"docker {' '.join(argv)} failed ({result.rc}): {result.stderr}")
        return result.stdout.strip()

    def name(self, what: str) -> str:
        return f"fortress-cis-{what}-{uuid.uuid4().hex[:8]}"

    def remove(self, *names: str) -> None:
        self.run("rm", "-f", *names)


def _httpd(target: DockerTarget, name: str, *extra: str) -> None:
    script = (
        f"{BUSYBOX} mkdir -p /www && echo fortress-ok > /www/index.html"
        f" && exec {BUSYBOX} httpd -f -p 8080 -h /www"
    )
    target.ok("run", "-d", "--name", name, *extra, target.image, BUSYBOX, "sh", "-c", script)


def _fetch(target: DockerTarget, name: str, ip: str, *extra: str) -> str:
    """Body of GET / from ip:8080, from a fresh container ("" when nothing answered).

    Plain HTTP over busybox nc: Debian 12's static busybox wget crashes (SIGSEGV) in a
    scratch image.
    """
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {BUSYBOX} nc -w 3 {ip} 8080"
    result = target.run(
        "run", "--rm", "--name", name, *extra, target.image, BUSYBOX, "sh", "-c", request
    )
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    return body.strip() if result.rc == 0 and head.startswith("HTTP/1.") else ""


def icc(target: DockerTarget) -> dict[str, str]:
    """`icc: false`: on the default bridge a container's HTTP server is unreachable from a
    sibling; the control network (icc enabled) carries the same request."""
    server, net = target.name("icc-server"), target.name("icc-net")
    try:
        _httpd(target, server)
        ip = target.ok("inspect", "-f", "{{.NetworkSettings.IPAddress}}", server)
        bridge = _fetch(target, target.name("icc-client"), ip)
        target.ok("network", "create", "-o", "com.docker.network.bridge.enable_icc=true", net)
        target.ok("network", "connect", net, server)
        ip2 = target.ok(
            "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', server
        )
        control = _fetch(target, target.name("icc-ctl"), ip2, "--network", net)
        return {"default_bridge": bridge, "control_network": control}
    finally:
        target.remove(server)
        target.run("network", "rm", net)


def no_new_privileges(target: DockerTarget) -> dict[str, str]:
    """`no-new-privileges: true`: NoNewPrivs is 1 in a container by default; the control
    (the daemon default explicitly overridden) shows 0. The kernel's /proc/self/status says
    so under runc; gVisor's does not report it, so there the flag is read from the OCI spec
    the daemon handed the runtime (`bundles` of the target), which runsc applies."""

    def nnp(*extra: str) -> str:
        cid = target.ok("run", "-d", *extra, target.image, BUSYBOX, "sleep", "60")
        try:
            status = target.ok("exec", cid, BUSYBOX, "cat", "/proc/self/status")
            for line in status.splitlines():
                if line.startswith("NoNewPrivs:"):
                    return line.split()[-1]
            show = f"{target.files} cat {target.bundles}/{cid}/config.json".strip()
            spec = json.loads(target.host.run(show).stdout)
            return "1" if spec["process"].get("noNewPrivileges") else "0"
        finally:
            target.remove(cid)

    return {"default": nnp(), "control": nnp("--security-opt", "no-new-privileges=false")}


def userland_proxy(target: DockerTarget, port: int = 18080) -> dict[str, Any]:
    """`userland-proxy: false`: a published port answers with no docker-proxy process."""
    server = target.name("proxy")
    try:
        _httpd(target, server, "-p", f"127.0.0.1:{port}:8080")
        answer = ""
        for _ in range(20):
            got = target.host.run(f"curl -s --max-time 3 http://127.0.0.1:{port}/")
            if got.rc == 0 and got.stdout.strip():
                answer = got.stdout.strip()
                break
            time.sleep(0.5)
        procs = target.host.run("pgrep -a docker-proxy").stdout.strip()
        return {"answer": answer, "docker_proxy_processes": procs}
    finally:
        target.remove(server)


def runtime_seen_from_the_host(target: DockerTarget, runtime: str) -> dict[str, Any]:
    """Not a CIS item but Fortress's own claim, checked the same way: a container started with
    `--runtime RUNTIME` (no network) as the host sees it: the runtime Docker recorded, whether
    a runsc-sandbox process carries its ID, and the kernel release inside and on the host."""
    cid = target.ok(
        "run",
        "-d",
        "--runtime",
        runtime,
        "--network",
        "none",
        target.image,
        BUSYBOX,
        "sleep",
        "120",
    )
    try:
        sandboxes = target.host.run("pgrep -af '^runsc-sandbox'").stdout.splitlines()
        return {
            "runtime": target.ok("inspect", "-f", "{{.HostConfig.Runtime}}", cid),
            "sandbox_process": any(cid in line for line in sandboxes),
            "kernel_inside": target.ok("exec", cid, BUSYBOX, "uname", "-r"),
            "kernel_host": target.host.run("uname -r").stdout.strip(),
        }
    finally:
        target.remove(cid)


def live_restore(target: DockerTarget, restart: str = "systemctl restart docker") -> dict[str, Any]:
    """`live-restore: true`: a running container keeps its PID across a daemon restart."""
    name = target.name("live")
    try:
        target.ok("run", "-d", "--name", name, target.image, BUSYBOX, "sleep", "600")
        before = target.ok("inspect", "-f", "{{.State.Pid}}", name)
        restarted = target.host.run(restart)
        after = ""
        for _ in range(60):
            got = target.run("inspect", "-f", "{{.State.Running}} {{.State.Pid}}", name)
            if got.rc == 0:
                after = got.stdout.strip()
                break
            time.sleep(0.5)
        return {"pid_before": before, "after": after, "restart_rc": restarted.rc}
    finally:
        target.remove(name)


def log_limits(target: DockerTarget, max_size_mib: int, max_files: int) -> dict[str, int]:
    """`log-opts` max-size and max-file (CIS 2.x, and a bound on the disk a tenant fills through
    its output): a container that writes more than max_size x max_files to stdout leaves at
    most that much json log on the daemon's disk, in max_files files; the control (the same
    container with a max-size of its own, above what it writes) keeps all of it."""
    written = (max_files + 1) * max_size_mib * 1024 * 1024
    script = f'{BUSYBOX} yes "$({BUSYBOX} printf %4000s x)" | {BUSYBOX} head -c {written}'

    def kept(*extra: str) -> tuple[int, int]:
        name = target.name("logs")
        try:
            target.ok(
                "run", "-d", "--name", name, *extra, target.image, BUSYBOX, "sh", "-c", script
            )
            target.ok("wait", name)
            path = target.ok("inspect", "-f", "{{.LogPath}}", name)
            count = f"cat {path}* | wc -c; ls {path}* | wc -l"
            got = target.host.run(f"{target.files} sh -c {shlex.quote(count)}".strip())
            size, files = got.stdout.split()
            return int(size), int(files)
        finally:
            target.remove(name)

    size, files = kept()
    control_size, _ = kept("--log-opt", f"max-size={2 * written // (1024 * 1024)}m")
    return {"written": written, "kept": size, "files": files, "control_kept": control_size}


def inner_target(host: _Host, outer: str = "default") -> DockerTarget:
    """An outer container's inner dockerd, through its host-side socket; its containers'
    OCI bundles live in the outer's own containerd state."""
    return DockerTarget(
        host,
        docker=f"docker -H unix:///run/fortress/outer/{outer}/docker.sock",
        files=f"docker exec fortress-outer-{outer}",
        bundles=INNER_BUNDLES,
    )
