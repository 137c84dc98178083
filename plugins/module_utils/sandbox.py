# Copyright: Fortress developers
# Apache-2.0
"""Agent sandboxes: gVisor containers with safe defaults, behind one adapter class.

The Ansible modules ``fortress.agents.sandbox*`` are thin front ends to this module, and
agent frameworks import it from plain Python::

    from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
        Sandboxes, SandboxSpec)

    boxes = Sandboxes()                          # the host's dockerd, checked first
    result = boxes.task(SandboxSpec(image="python:3.12-slim", owner="agent-7"),
                        ["python3", "-c", "print(6 * 7)"], timeout=30)
    print(result.rc, result.stdout)

Ownership and expiry live in container labels (``io.fortress.sandbox*``), so listing and
reaping never touch containers this module did not create. Every sandbox runs under a
runsc runtime, verified from the host side after start; anything else is refused and
removed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import logging.handlers
import os
import posixpath
import re
import select
import socket
import stat
import struct
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

try:  # the Docker SDK for Python; the modules report its absence cleanly
    import docker
    import docker.errors
    import requests.exceptions

    # What a daemon that died, restarted or hangs looks like from here.
    _LOST: tuple[type[BaseException], ...] = (
        requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
    )  # fmt: skip
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - depends on the host
    _LOST = ()
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = exc

LABEL = "io.fortress.sandbox"
LABEL_OWNER = f"{LABEL}.owner"
LABEL_TTL = f"{LABEL}.ttl"
LABEL_EXPIRES = f"{LABEL}.expires"
LABEL_SPEC = f"{LABEL}.spec"
LABEL_NETWORK = f"{LABEL}.network"
LABEL_IMAGE = f"{LABEL}.image"
# Egress contract (the egress and outer_sandbox roles): an outer container on policy P's
# internal network (EGRESS_NETWORK_PREFIX + P, whose only way out is P's proxy) runs an inner
# daemon labelled EGRESS_POLICY_LABEL=P, EGRESS_PROXY_LABEL=<proxy URL> and
# EGRESS_RUNTIME_LABEL=<a runsc runtime with --network=host>. A sandbox whose `network` is P
# shares that outer's network namespace (Docker network mode host, under that runtime) and
# gets the proxy in its environment; any other `network` value but none is refused there.
EGRESS_NETWORK_PREFIX = "fortress-egress-"
EGRESS_POLICY_LABEL = "io.fortress.egress.policy"
EGRESS_PROXY_LABEL = "io.fortress.egress.proxy"
EGRESS_RUNTIME_LABEL = "io.fortress.egress.runtime"
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")

DEFAULT_SOCKET = "/run/docker.sock"
DEFAULT_WORKSPACE_ROOT = "/var/lib/fortress/workspaces"
DEFAULT_AUDIT_LOG = "/var/log/fortress/sandbox-audit.log"
DEFAULT_USER = "65534:65534"  # nobody
# The command of a sandbox that waits for execs (and stops at once on SIGTERM).
KEEP_ALIVE = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"]
NOT_A_TARGET = (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/run",
    "/sbin", "/sys", "/usr", "/var/run",
)  # fmt: skip
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_SIZE = re.compile(r"(\d+)([bkmg]?)", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


# Argument spec of the options in the sandbox doc fragment, shared by every module.
COMMON_ARGS: dict[str, dict[str, Any]] = {
    "docker_socket": {"type": "path", "default": DEFAULT_SOCKET},
    "docker_socket_owner": {"type": "int", "default": 0},
    "workspace_root": {"type": "path", "default": DEFAULT_WORKSPACE_ROOT},
    "audit_log": {"type": "path", "default": DEFAULT_AUDIT_LOG},
}


def from_module_params(params: dict[str, Any]) -> Sandboxes:
    """The adapter for an Ansible module's common options."""
    return Sandboxes(
        socket_path=params["docker_socket"],
        socket_owner=params["docker_socket_owner"],
        workspace_root=params["workspace_root"],
        audit_log=params["audit_log"] or None,
    )


class SandboxError(Exception):
    """One sentence that names the problem and the fix."""


def parse_size(value: str | int | None, option: str) -> int | None:
    """'512m' -> bytes; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if not match or int(match.group(1)) == 0:
        raise SandboxError(f"{option} must be a size like 256m or 1g, not {value!r}.")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool = True


@dataclass
class SandboxSpec:
    """What a sandbox is. Defaults are the safe ones."""

    image: str
    name: str | None = None
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str = DEFAULT_USER
    cpus: float | None = 1.0
    memory: str | None = "512m"
    pids: int | None = 256
    tmpfs_size: str = "64m"
    read_only: bool = True
    network: str = "none"
    owner: str = "unknown"
    ttl: int = 3600
    labels: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    runtime: str = "runsc"

    def fingerprint(self) -> str:
        """A hash of everything that defines the sandbox (not its name): same spec, same
        hash, so `state: present` twice changes nothing and a changed spec recreates."""
        data = asdict(self)
        data.pop("name")
        data["env"] = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in self.env.items()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ExecResult:
    rc: int | None
    stdout: str
    stderr: str
    duration: float
    truncated: bool = False
    timed_out: bool = False


def check_socket(path: str, owner: int = 0) -> None:
    """Refuse a daemon socket a compromised outer container could have redirected.

    owner: the uid that must own it: root, or for an outer container in userns mode the host
    uid its root maps to (that daemon creates the socket as its own root)."""
    if os.path.realpath(path) != os.path.abspath(path):
        raise SandboxError(
            f"the Docker socket {path} is reached through a symlink: give its real path."
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise SandboxError(f"no Docker socket at {path}: is that daemon running?") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise SandboxError(f"{path} is not a socket: give the path of a Docker daemon's socket.")
    if st.st_uid != owner:
        expected = "root" if owner == 0 else f"uid {owner}"
        raise SandboxError(
            f"the Docker socket {path} is owned by uid {st.st_uid}, not {expected}: refusing a "
            "socket another user (or a compromised container) could have put there."
        )


def host_path_in_workspace(
    path: str, workspace_root: str, must_exist: bool = True, what: str = "host path"
) -> str:
    """The real path of `path` if it lies strictly below the workspace root (symlinks
    resolved first, so none leads out) and is not a socket; SandboxError otherwise."""
    root = os.path.realpath(workspace_root)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root or real == root:
        raise SandboxError(
            f"{what} {path} is outside the workspace root {workspace_root}: "
            "put workspaces below it."
        )
    if must_exist and not os.path.exists(real):
        raise SandboxError(f"{what} {path} does not exist: create the workspace first.")
    if not must_exist and not os.path.isdir(os.path.dirname(real)):
        raise SandboxError(f"the directory of {what} {path} does not exist: create it first.")
    if os.path.exists(real) and stat.S_ISSOCK(os.stat(real).st_mode):
        raise SandboxError(f"{what} {path} is a socket: sockets are never used.")
    return real


def check_mount(mount: Mount, workspace_root: str) -> Mount:
    """Only directories or files below the workspace root, never sockets or system paths."""
    source = host_path_in_workspace(mount.source, workspace_root, what="mount source")
    target = posixpath.normpath(mount.target)
    if not posixpath.isabs(target) or any(
        target == p or (p != "/" and target.startswith(p + "/")) for p in NOT_A_TARGET
    ):
        raise SandboxError(
            f"mount target {mount.target} is a system path: use a path like /workspace."
        )
    return Mount(source, target, mount.read_only)


def safe_path(path: str) -> str:
    """An absolute path inside the sandbox with no '..' component (file transfer)."""
    if not path.startswith("/") or ".." in path.split("/") or "\0" in path:
        raise SandboxError(f"path {path!r} must be absolute and must not contain '..'.")
    return posixpath.normpath(path)


def safe_workdir(path: str | None) -> str | None:
    """A working directory outside the kernel's pseudo-filesystems. A /proc/self/fd/N
    working directory is the CVE-2024-21626 escape (a leaked host fd); refused before any
    runtime sees it."""
    if path is None:
        return None
    clean = safe_path(path)
    if clean.lstrip("/").split("/")[0] in ("proc", "sys", "dev"):
        raise SandboxError(
            f"workdir {path!r} is under /proc, /sys or /dev, where a working directory can "
            "reach outside the sandbox (CVE-2024-21626): pick a directory of the image or a "
            "mount."
        )
    return clean


def runsc_sandbox_pids(container_id: str, proc: str = "/proc") -> list[int]:
    """Host PIDs of runsc-sandbox processes whose command line carries container_id."""
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == b"runsc-sandbox" and any(container_id.encode() in a for a in argv):
            found.append(int(entry))
    return found


def demux(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split Docker's multiplexed stream into (stream, payload) frames; return the rest."""
    frames = []
    while len(buffer) >= 8:
        stream, size = buffer[0], struct.unpack(">I", buffer[4:8])[0]
        if len(buffer) < 8 + size:
            break
        frames.append((stream, buffer[8 : 8 + size]))
        buffer = buffer[8 + size :]
    return frames, buffer


class AuditLog:
    """One JSON line per lifecycle event, rotated; env values never appear."""

    def __init__(self, path: str | None) -> None:
        self._logger: logging.Logger | None = None
        if path:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            logger = logging.getLogger(f"fortress.sandbox.audit.{path}")
            if not logger.handlers:
                handler = logging.handlers.RotatingFileHandler(
                    path, maxBytes=10 * 1024 * 1024, backupCount=5
                )
                handler.setFormatter(logging.Formatter("%(message)s"))
                logger.addHandler(handler)
                logger.setLevel(logging.INFO)
                logger.propagate = False
                os.chmod(path, 0o640)
            self._logger = logger

    def event(self, event: str, **data: Any) -> None:
        if self._logger:
            record = {"time": time.time(), "event": event, **data}
            self._logger.info(json.dumps(record, sort_keys=True, default=str))


def _daemon_call(what: str) -> Any:
    """Turn a daemon lost mid-call into one SandboxError sentence (not a traceback)."""

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: Sandboxes, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except _LOST as exc:
                raise SandboxError(
                    f"the Docker daemon at {self.socket_path} stopped answering during {what} "
                    f"({type(exc).__name__}): check that it runs (the host's docker service, or "
                    "the outer container), then retry."
                ) from exc

        return call

    return wrap


def _refusal(spec: SandboxSpec, explanation: str) -> str:
    """Docker's refusal as one sentence; the limits a parent cgroup caps get their fix."""
    if any(f"{knob}: invalid argument" in explanation for knob in ("cfs_quota_us", "cpu.max")):
        return (
            f"the sandbox asks for {spec.cpus} CPUs, more than the daemon's parent cgroup (for "
            "example its outer container) allows: lower cpus to at most the outer's cpus."
        )
    return f"Docker refused the sandbox: {explanation}."


class Sandboxes:
    """The adapter: every call to Docker goes through here."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        workspace_root: str = DEFAULT_WORKSPACE_ROOT,
        audit_log: str | None = DEFAULT_AUDIT_LOG,
        check: bool = True,
        socket_owner: int = 0,
    ) -> None:
        if not HAS_DOCKER:
            raise SandboxError(
                f"the Docker SDK for Python is missing ({DOCKER_IMPORT_ERROR}): "
                "install python3-docker."
            )
        if check:
            check_socket(socket_path, socket_owner)
        self.socket_path = socket_path
        self.workspace_root = workspace_root
        self.audit = AuditLog(audit_log)
        try:
            self.client = docker.DockerClient(base_url=f"unix://{socket_path}", timeout=120)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise SandboxError(
                f"the Docker daemon at {socket_path} does not answer ({exc}): start it, or give "
                "the socket of a running daemon."
            ) from exc

    # --- lookups ------------------------------------------------------------------------

    @_daemon_call("a lookup")
    def get(self, name: str) -> Any | None:
        """The sandbox container called name, or None; refuses containers not ours."""
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        if container.labels.get(LABEL) != "1":
            raise SandboxError(
                f"a container named {name} exists but was not created by Fortress: "
                "pick another name."
            )
        return container

    @_daemon_call("the runtime check")
    def check_runtime(self, runtime: str) -> None:
        runtimes = self.client.info().get("Runtimes", {})
        path = (runtimes.get(runtime) or {}).get("path", "")
        if not runtime.startswith("runsc") or posixpath.basename(path) != "runsc":
            raise SandboxError(
                f"runtime {runtime!r} is not a runsc runtime of this daemon (it has "
                f"{', '.join(sorted(runtimes))}): sandboxes run only under gVisor; "
                "converge site.yml (the gvisor role for a host's daemon, outer_sandbox for an "
                "outer container's)."
            )

    # --- lifecycle ----------------------------------------------------------------------

    @_daemon_call("create")
    def create(self, spec: SandboxSpec, start: bool = True) -> Any:
        """Create (and start) a sandbox; on any failure nothing is left behind."""
        kwargs = self._create_kwargs(spec)
        self.check_runtime(kwargs["runtime"])
        began = time.monotonic()
        container = None
        try:
            container = self.client.containers.create(spec.image, **kwargs)
            if start:
                self.start(container)
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(
                f"image {spec.image} is not on this daemon: load or build it there first."
            ) from exc
        except docker.errors.APIError as exc:
            note = self._discard(container)
            if exc.status_code == 409:
                raise SandboxError(
                    f"a container named {spec.name} already exists: pick another name."
                ) from exc
            raise SandboxError(_refusal(spec, str(exc.explanation or exc)) + note) from exc
        except BaseException:
            self._discard(container)
            raise
        self.audit.event(
            "create", sandbox=container.name, image=spec.image, image_id=container.image.id,
            owner=spec.owner, argv=spec.command, env_keys=sorted(spec.env),
            duration=round(time.monotonic() - began, 3),
        )  # fmt: skip
        return container

    @_daemon_call("start")
    def start(self, container: Any) -> None:
        """Start and verify from the host side that it runs in gVisor; else remove it."""
        container.start()
        container.reload()
        runtime = container.attrs["HostConfig"].get("Runtime", "")
        deadline = time.monotonic() + 10
        while not runsc_sandbox_pids(container.id):
            if time.monotonic() > deadline or not runtime.startswith("runsc"):
                note = self._discard(container) or " It was removed."
                raise SandboxError(
                    f"sandbox {container.name} did not start under gVisor (runtime {runtime!r}, "
                    "no runsc-sandbox process for it): its daemon's runsc runtime is not gVisor, "
                    f"fix the daemon's runtimes; nothing was run in it.{note}"
                )
            time.sleep(0.05)

    def _discard(self, container: Any) -> str:
        """Remove a container that will not be handed out: '' once it is gone, else a
        sentence saying it could not be removed (a runtime that cannot kill, say)."""
        if container is None:
            return ""
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            return (
                f" Removing {container.name} failed too ({exc.explanation or exc}): remove it "
                "once the runtime is fixed."
            )
        return ""

    @_daemon_call("remove")
    def remove(self, name: str) -> bool:
        container = self.get(name)
        if container is None:
            return False
        container.remove(force=True)
        self.audit.event("remove", sandbox=name, owner=container.labels.get(LABEL_OWNER))
        return True

    @_daemon_call("exec")
    def exec(
        self,
        name: str,
        argv: list[str],
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        max_output: int = 1024 * 1024,
        workdir: str | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Run argv in the sandbox; the timeout kills it inside the sandbox."""
        container = self.get(name)
        if container is None:
            raise SandboxError(f"no sandbox named {name}: create it first.")
        if container.status != "running":
            raise SandboxError(
                f"sandbox {name} is not running ({container.status}, exit code "
                f"{container.attrs['State'].get('ExitCode')}; a daemon or outer container restart "
                "stops sandboxes): remove it and create it again."
            )
        api = self.client.api
        marker = f"/tmp/.fortress-exec-{os.urandom(6).hex()}"
        # The wrapper records the PID so that a timeout can kill the process (and its
        # children) from a second exec: Docker's API cannot kill an exec.
        wrapped = ["/bin/sh", "-c", f'echo $$ > {marker}; exec "$@"', "sh", *argv]
        began = time.monotonic()
        exec_id = api.exec_create(
            container.id, wrapped, stdin=stdin is not None, environment=env or None,
            workdir=safe_workdir(workdir), user=user or "",
        )["Id"]  # fmt: skip
        sock = api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        out, err, truncated, timed_out = bytearray(), bytearray(), False, False
        try:
            if stdin is not None:
                raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
            pending = b""
            while True:
                left = began + timeout - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                ready = select.select([raw], [], [], left)[0]
                if not ready:
                    continue
                chunk = raw.recv(65536)
                if not chunk:
                    break
                frames, pending = demux(pending + chunk)
                for stream, payload in frames:
                    target = out if stream == 1 else err
                    room = max_output - len(target)
                    truncated |= len(payload) > room
                    target += payload[: max(room, 0)]
        finally:
            raw.close()
        if timed_out:
            self._kill_exec(container, marker, user)
        rc = None if timed_out else api.exec_inspect(exec_id).get("ExitCode")
        result = ExecResult(
            rc=rc, stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"),
            duration=round(time.monotonic() - began, 3), truncated=truncated, timed_out=timed_out,
        )  # fmt: skip
        self.audit.event(
            "exec", sandbox=name, owner=container.labels.get(LABEL_OWNER), argv=argv,
            env_keys=sorted(env or {}), rc=rc, timed_out=timed_out, duration=result.duration,
        )  # fmt: skip
        return result

    def _kill_exec(self, container: Any, marker: str, user: str | None) -> None:
        """Kill the timed-out exec and every descendant (stopped first, so none escapes by
        being reparented), from a second exec as the same user."""
        script = (
            'tree() { kill -STOP "$1" 2>/dev/null; '
            "for c in $(awk -v p=\"$1\" '$4 == p {print $1}' /proc/[0-9]*/stat 2>/dev/null); "
            'do tree "$c"; done; kill -KILL "$1" 2>/dev/null; }; '
            f'p=$(cat {marker}) && tree "$p"; rm -f {marker}'
        )
        container.exec_run(["/bin/sh", "-c", script], user=user or "")

    @_daemon_call("a task")
    def task(self, spec: SandboxSpec, argv: list[str], stdin: bytes | None = None,
             timeout: float = 60, max_output: int = 1024 * 1024) -> ExecResult:  # fmt: skip
        """Ephemeral one-shot: create, run, collect, always destroy."""
        keep_alive = replace(
            spec,
            command=KEEP_ALIVE,
            name=spec.name or f"fortress-task-{os.urandom(6).hex()}",
        )
        container = self.create(keep_alive)
        try:
            return self.exec(
                container.name, argv, stdin=stdin, env=spec.env or None, timeout=timeout,
                max_output=max_output,
            )  # fmt: skip
        finally:
            container.remove(force=True)
            self.audit.event("remove", sandbox=container.name, owner=spec.owner)

    @_daemon_call("a file upload")
    def put_file(self, name: str, path: str, data: bytes, mode: str = "0600") -> None:
        """Stream a file into the sandbox through the sandbox itself (gVisor keeps its root
        filesystem's writes in its own overlay, which the host cannot write into)."""
        path = safe_path(path)
        result = self.exec(
            name, ["/bin/sh", "-c", 'cat > "$1" && chmod "$2" "$1"', "sh", path, mode], stdin=data
        )
        if result.rc != 0:
            raise SandboxError(f"could not write {path} in {name}: {result.stderr.strip()}")

    @_daemon_call("a file download")
    def get_file(self, name: str, path: str, max_size: int = 64 * 1024 * 1024) -> bytes:
        """Stream a file out of the sandbox through the sandbox itself, base64-encoded on the
        way (binary-safe; the image needs base64, as busybox and coreutils have)."""
        path = safe_path(path)
        argv = ["/bin/sh", "-c", 'base64 < "$1"', "sh", path]
        result = self.exec(name, argv, max_output=max_size * 4 // 3 + 4096)
        if result.rc != 0:
            raise SandboxError(f"could not read {path} in {name}: {result.stderr.strip()}")
        if result.truncated:
            raise SandboxError(f"{path} in {name} is larger than {max_size} bytes.")
        return base64.b64decode("".join(result.stdout.split()))

    @_daemon_call("a file checksum")
    def file_sha256(self, name: str, path: str) -> str | None:
        """sha256 of a file in the sandbox (None if it does not exist or cannot be read)."""
        path = safe_path(path)
        result = self.exec(name, ["/bin/sh", "-c", 'sha256sum < "$1"', "sh", path])
        return result.stdout.split()[0] if result.rc == 0 and result.stdout.strip() else None

    # --- listing and reaping --------------------------------------------------------------

    @_daemon_call("list")
    def list(self, owner: str | None = None, labels: dict[str, str] | None = None,
             now: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
        filters = [f"{LABEL}=1"]
        if owner:
            filters.append(f"{LABEL_OWNER}={owner}")
        filters += [f"{k}={v}" for k, v in (labels or {}).items()]
        now = time.time() if now is None else now
        found = []
        for c in self.client.containers.list(all=True, filters={"label": filters}):
            expires = float(c.labels.get(LABEL_EXPIRES, "inf"))
            found.append({
                "name": c.name, "id": c.id, "status": c.status,
                "image": c.labels.get(LABEL_IMAGE, ""), "owner": c.labels.get(LABEL_OWNER, ""),
                "expires": expires, "expired": expires <= now, "labels": c.labels,
                "runtime": c.attrs["HostConfig"].get("Runtime", ""),
            })  # fmt: skip
        return found

    @_daemon_call("reap")
    def reap(self, dry_run: bool = False, now: float | None = None) -> list[str]:
        """Destroy every Fortress sandbox whose TTL has passed; return their names."""
        expired = [s["name"] for s in self.list(now=now) if s["expired"]]
        if not dry_run:
            for name in expired:
                self.remove(name)
                self.audit.event("reap", sandbox=name)
        return expired

    # --- internals ------------------------------------------------------------------------

    def _create_kwargs(self, spec: SandboxSpec) -> dict[str, Any]:
        if spec.name is not None and not _NAME.fullmatch(spec.name):
            raise SandboxError(
                f"name {spec.name!r} must be 1-128 letters, digits, '_', '.' or '-'."
            )
        if spec.cpus is not None and spec.cpus <= 0:
            raise SandboxError(f"cpus must be more than 0, not {spec.cpus}.")
        if spec.pids is not None and spec.pids < 1:
            raise SandboxError(f"pids must be 1 or more, not {spec.pids}.")
        if spec.ttl < 1:
            raise SandboxError(f"ttl must be 1 second or more, not {spec.ttl}.")
        memory = parse_size(spec.memory, "memory")
        tmpfs = parse_size(spec.tmpfs_size, "tmpfs_size")
        mounts = [check_mount(m, self.workspace_root) for m in spec.mounts]
        network, runtime, proxy_env = self.network_plan(spec.network, spec.runtime)
        now = time.time()
        labels = {
            **spec.labels, LABEL: "1", LABEL_OWNER: spec.owner, LABEL_TTL: str(spec.ttl),
            LABEL_EXPIRES: str(int(now + spec.ttl)), LABEL_SPEC: spec.fingerprint(),
            LABEL_NETWORK: spec.network, LABEL_IMAGE: spec.image,
        }  # fmt: skip
        return {
            "name": spec.name, "command": spec.command,
            "environment": {**proxy_env, **spec.env} or None,
            "working_dir": safe_workdir(spec.workdir), "user": spec.user, "runtime": runtime,
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
            "read_only": spec.read_only, "network_mode": network,
            "tmpfs": {"/tmp": f"size={tmpfs},mode=1777"},
            "mem_limit": memory, "memswap_limit": memory,
            "nano_cpus": int(spec.cpus * 1e9) if spec.cpus else None,
            "pids_limit": spec.pids, "labels": labels, "detach": True,
            "volumes": {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                        for m in mounts},
        }  # fmt: skip

    def network_plan(self, policy: str, runtime: str) -> tuple[str, str, dict[str, str]]:
        """(Docker network mode, runtime, proxy environment) for a sandbox's `network`."""
        if policy == "none":
            return "none", runtime, {}
        labels = dict(item.partition("=")[::2] for item in self.client.info().get("Labels") or [])
        have = labels.get(EGRESS_POLICY_LABEL)
        if have != policy:
            where = (
                f"its outer container has policy {have!r}"
                if have
                else ("it is not an outer container on an egress policy's network")
            )
            raise SandboxError(
                f"egress policy {policy!r} is not available on this daemon ({where}): create the "
                f"sandbox through an outer container whose outer_sandbox_instances item has "
                f"egress: {policy} (converge the egress role first), or use network: none."
            )
        proxy, egress_runtime = labels.get(EGRESS_PROXY_LABEL), labels.get(EGRESS_RUNTIME_LABEL)
        if not proxy or not egress_runtime:
            raise SandboxError(
                f"this daemon names egress policy {policy!r} without its proxy or runtime "
                f"({EGRESS_PROXY_LABEL}, {EGRESS_RUNTIME_LABEL}): converge outer_sandbox again."
            )
        return "host", egress_runtime, {key: proxy for key in PROXY_ENV}
