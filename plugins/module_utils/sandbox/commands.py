# Copyright: Fortress developers
# Apache-2.0
"""Commands in a sandbox: exec (bounded, timed), the one-shot task."""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import replace
from typing import Any

from .contract import DEFAULT_MAX_OUTPUT, KEEP_ALIVE, LABEL_OWNER
from .errors import SandboxError, StreamError, daemon_call
from .guards import safe_workdir
from .spec import ExecResult, SandboxSpec
from .stream import Capped, Demuxer


class CommandsMixin:
    """exec and task, on the adapter (client.Sandboxes)."""

    client: Any
    audit: Any

    @daemon_call("exec")
    def exec(
        self,
        name: str,
        argv: list[str],
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        max_output: int = DEFAULT_MAX_OUTPUT,
        workdir: str | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Run argv in the sandbox; the timeout kills it inside the sandbox. The daemon's
        answer is read as hostile: at most max_output bytes per stream are kept."""
        container = self.get(name)  # type: ignore[attr-defined]
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
        out, err = Capped(max_output), Capped(max_output)
        timed_out, protocol_error = False, None
        try:
            if stdin is not None:
                raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
            demuxer = Demuxer()
            while True:
                left = began + timeout - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not select.select([raw], [], [], left)[0]:
                    continue
                chunk = raw.recv(65536)
                if not chunk:
                    break
                for stream, piece in demuxer.feed(chunk):
                    (out if stream == 1 else err).add(piece)
        except StreamError as exc:
            protocol_error = exc
        finally:
            raw.close()
        if timed_out or protocol_error:
            self._kill_exec(container, marker, user)
        if protocol_error:
            self.audit.event("exec-protocol-error", sandbox=name, error=str(protocol_error))
            raise protocol_error
        rc = None if timed_out else api.exec_inspect(exec_id).get("ExitCode")
        result = ExecResult(
            rc=rc if isinstance(rc, int) or rc is None else None,
            stdout=out.data.decode(errors="replace"), stderr=err.data.decode(errors="replace"),
            duration=round(time.monotonic() - began, 3),
            truncated=out.truncated or err.truncated, timed_out=timed_out,
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

    @daemon_call("a task")
    def task(self, spec: SandboxSpec, argv: list[str], stdin: bytes | None = None,
             timeout: float = 60, max_output: int = DEFAULT_MAX_OUTPUT) -> ExecResult:  # fmt: skip
        """Ephemeral one-shot: create, run, collect, always destroy."""
        keep_alive = replace(
            spec,
            command=KEEP_ALIVE,
            name=spec.name or f"fortress-task-{os.urandom(6).hex()}",
        )
        container = self.create(keep_alive)  # type: ignore[attr-defined]
        try:
            return self.exec(
                container.name, argv, stdin=stdin, env=spec.env or None, timeout=timeout,
                max_output=max_output,
            )  # fmt: skip
        finally:
            container.remove(force=True)
            self.audit.event("remove", sandbox=container.name, owner=spec.owner)
