# Copyright: Fortress developers
# Apache-2.0
"""The adapter: every call to a Docker daemon goes through Sandboxes. Lookups, create and
remove live here; proof.py adds the runtime proof and start, listing.py listing and
reaping, commands.py exec and task, files.py copies."""

from __future__ import annotations

import os
import time
from typing import Any

from . import hostfs, mounts
from .audit import AuditLog
from .commands import CommandsMixin
from .contract import (
    DEFAULT_AUDIT_LOG,
    DEFAULT_FINGERPRINT_KEY,
    DEFAULT_SOCKET,
    DEFAULT_WORKSPACE_ROOT,
    INIT_TARGET,
    KEEP_ALIVE,
    LABEL,
    LABEL_EXPIRES,
    LABEL_IMAGE,
    LABEL_MOUNTS,
    LABEL_NETWORK,
    LABEL_OWNER,
    LABEL_SPEC,
    LABEL_TTL,
    MAX_TTL,
    RUNSC_DIGESTS,
    SANDBOX_INIT,
)  # fmt: skip
from .egress import egress_plan
from .errors import SandboxError, daemon_call
from .files import FilesMixin
from .guards import SocketFd, check_mount, open_socket, safe_workdir
from .listing import ListingMixin, labels_of
from .proof import RuntimeMixin
from .spec import SandboxSpec, parse_size
from .transport import DOCKER_IMPORT_ERROR, HAS_DOCKER, connect, docker


def _refusal(spec: SandboxSpec, explanation: str) -> str:
    """Docker's refusal as one sentence; the limits a parent cgroup caps get their fix."""
    if SANDBOX_INIT in explanation:
        return (
            f"the daemon has no sandbox init at {SANDBOX_INIT} (Docker said: {explanation}): "
            "converge the gvisor role on the host and the outer_sandbox role for an outer."
        )
    if any(f"{knob}: invalid argument" in explanation for knob in ("cfs_quota_us", "cpu.max")):
        return (
            f"the sandbox asks for {spec.cpus} CPUs, more than the daemon's parent cgroup (for "
            "example its outer container) allows: lower cpus to at most the outer's cpus."
        )
    return f"Docker refused the sandbox: {explanation}."


class Sandboxes(RuntimeMixin, CommandsMixin, FilesMixin, ListingMixin):
    """The adapter: every call to Docker goes through here."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        workspace_root: str = DEFAULT_WORKSPACE_ROOT,
        audit_log: str | None = DEFAULT_AUDIT_LOG,
        check: bool = True,
        socket_owner: int = 0,
        fingerprint_key: str | None = DEFAULT_FINGERPRINT_KEY,
        max_ttl: int = MAX_TTL,
        runsc_digests: str = RUNSC_DIGESTS,
    ) -> None:
        if not HAS_DOCKER:
            raise SandboxError(
                f"the Docker SDK for Python is missing ({DOCKER_IMPORT_ERROR}): "
                "install python3-docker."
            )
        # The verified socket, connected through its descriptor from now on (guards.py); the
        # client holds it (callers keep the client after the adapter: fortress-reap does).
        verified = SocketFd(open_socket(socket_path, socket_owner)) if check else None
        self.socket_path = socket_path
        # Whether the daemon shares this process's mount namespace (mounts.host_daemon).
        self.host_daemon = mounts.host_daemon(verified.path if verified else socket_path)
        self.workspace_root = workspace_root
        self.max_ttl = max_ttl
        self.runsc_digests = runsc_digests  # the runsc binaries the roles published
        self.audit = AuditLog(audit_log)
        self.skipped: list[str] = []  # what reap() passed over, one sentence each
        # fingerprint_key None: a random key of this adapter only (labels match within it).
        self._key = hostfs.load_key(fingerprint_key) if fingerprint_key else os.urandom(32)
        try:
            self.client = connect(
                verified.path if verified else socket_path, 120, shown=socket_path, keep=verified
            )
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise SandboxError(
                f"the Docker daemon at {socket_path} does not answer ({exc}): start it, or give "
                "the socket of a running daemon."
            ) from exc

    def close(self) -> None:
        """Close the daemon connections (the socket's descriptor goes with the client)."""
        self.client.api.close()

    def fingerprint(self, spec: SandboxSpec) -> str:
        """The spec's fingerprint label under this host's key (secrets in env stay secret)."""
        return spec.fingerprint(self._key)

    # --- lookups ------------------------------------------------------------------------

    @daemon_call("a lookup")
    def get(self, name: str) -> Any | None:
        """The sandbox container called name, or None; refuses containers not ours."""
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        if (labels_of(container.attrs) or {}).get(LABEL) != "1":
            raise SandboxError(
                f"a container named {name} exists but was not created by Fortress: "
                "pick another name."
            )
        return container

    # --- lifecycle ----------------------------------------------------------------------

    @daemon_call("create")
    def create(self, spec: SandboxSpec, start: bool = True) -> Any:
        """Create (and start) a sandbox; on any failure nothing is left behind."""
        mountable = self._mountable(spec)  # refused before the daemon is asked
        kwargs = self._create_kwargs(spec)
        self.check_runtime(kwargs["runtime"])
        began = time.monotonic()
        container, token = None, None
        try:
            kwargs["command"] = self._command(spec)
            if mountable:  # Docker is given what was checked, never the name (mounts.py)
                token, staged = mounts.stage(mountable, self.workspace_root)
                kwargs["mounts"] += mounts.docker_mounts(staged)
                kwargs["labels"][LABEL_MOUNTS] = token
            container = self.client.containers.create(spec.image, **kwargs)
            if start:
                self.start(container)
        except BaseException as exc:
            note = self._discard(container)
            mounts.release(token)
            if isinstance(exc, docker.errors.ImageNotFound):
                raise SandboxError(
                    f"image {spec.image} is not on this daemon: load or build it there first."
                ) from exc
            if isinstance(exc, docker.errors.APIError) and exc.status_code == 409:
                raise SandboxError(
                    f"a container named {spec.name} already exists: pick another name."
                ) from exc
            if isinstance(exc, docker.errors.APIError):
                raise SandboxError(_refusal(spec, str(exc.explanation or exc)) + note) from exc
            raise
        self.audit.event(
            "create", sandbox=container.name, image=spec.image, image_id=container.image.id,
            owner=spec.owner, argv=spec.command, env_keys=sorted(spec.env),
            duration=round(time.monotonic() - began, 3),
        )  # fmt: skip
        return container

    def _command(self, spec: SandboxSpec) -> list[str]:
        """The init's arguments after `boot`: none for a sandbox that waits for execs, else
        `--` and the command (the image's entrypoint and command when the spec has none)."""
        if spec.command == KEEP_ALIVE:
            return []
        argv = spec.command
        if argv is None:
            config = self.client.images.get(spec.image).attrs.get("Config") or {}
            argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        return ["--", *argv] if argv else []

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
        self.release_mounts(container.labels)
        return ""

    @daemon_call("remove")
    def remove(self, name: str) -> bool:
        container = self.get(name)
        if container is None:
            return False
        container.remove(force=True)
        self.release_mounts(container.labels)
        self.audit.event("remove", sandbox=name, owner=container.labels.get(LABEL_OWNER))
        return True

    def _mountable(self, spec: SandboxSpec) -> list:
        """The spec's mounts, checked; refused in one sentence when the daemon would resolve
        their paths in another mount namespace (an outer container's)."""
        checked = [check_mount(m, self.workspace_root) for m in spec.mounts]
        if checked and not self.host_daemon:
            raise SandboxError(
                f"mounts are refused through the Docker daemon at {self.socket_path}: it runs in "
                "another mount namespace (an outer container's), where a host path names "
                "whatever that namespace put there, so copy files in with sandbox_copy or run "
                "the sandbox on the host's daemon."
            )
        return checked

    def release_mounts(self, labels: dict[str, str] | None) -> None:
        """Release the staged mounts of a removed sandbox of the host's daemon (an outer's
        daemon never got any, and its labels may name another sandbox's)."""
        if self.host_daemon:
            mounts.release((labels or {}).get(LABEL_MOUNTS))

    # --- internals ------------------------------------------------------------------------

    def _create_kwargs(self, spec: SandboxSpec) -> dict[str, Any]:
        spec.check(self.max_ttl)
        memory = parse_size(spec.memory, "memory")
        tmpfs = parse_size(spec.tmpfs_size, "tmpfs_size")
        network, runtime, proxy_env = self.network_plan(spec.network, spec.runtime)
        now = time.time()
        labels = {
            **spec.labels, LABEL: "1", LABEL_OWNER: spec.owner, LABEL_TTL: str(spec.ttl),
            LABEL_EXPIRES: str(int(now + spec.ttl)), LABEL_SPEC: self.fingerprint(spec),
            LABEL_NETWORK: spec.network, LABEL_IMAGE: spec.image,
        }  # fmt: skip
        return {
            "name": spec.name, "entrypoint": [INIT_TARGET, "boot"],
            "mounts": [docker.types.Mount(INIT_TARGET, SANDBOX_INIT, type="bind", read_only=True)],
            "environment": {**proxy_env, **spec.env} or None,
            "working_dir": safe_workdir(spec.workdir), "user": spec.user, "runtime": runtime,
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
            "read_only": spec.read_only, "network_mode": network,
            "tmpfs": {"/tmp": f"size={tmpfs},mode=1777"},
            "mem_limit": memory, "memswap_limit": memory,
            "nano_cpus": int(spec.cpus * 1e9) if spec.cpus else None,
            "pids_limit": spec.pids, "labels": labels, "detach": True,
            # An image's HEALTHCHECK would run as plain execs from start, before the runtime
            # is proven and outside the init's reach.
            "healthcheck": {"test": ["NONE"]},
        }  # fmt: skip

    def network_plan(self, policy: str, runtime: str) -> tuple[str, str, dict[str, str]]:
        """(Docker network mode, runtime, proxy environment) for a sandbox's `network`."""
        if policy == "none":
            return "none", runtime, {}
        return egress_plan(self.client.info().get("Labels") or [], policy)
