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

from .contract import (
    DEFAULT_MAX_OUTPUT,
    EXEC_START_TRIES,
    KEEP_ALIVE,
    KILL_OUTPUT,
    KILL_TIMEOUT,
)
from .errors import ANSWERS, LOST, MALFORMED, SandboxError, StreamError, daemon_call
from .guards import safe_workdir
from .limits import Watch
from .listing import entry
from .spec import ExecResult, SandboxSpec
from .stream import Capped, Demuxer


def never_started(inspected: dict[str, Any]) -> bool:
    """Docker's answer for an exec its runtime failed to start: exit code 126 and no
    process ID (a command that ran and exited 126 has one)."""
    started = inspected.get("Pid") or inspected.get("Running")
    return inspected.get("ExitCode") == 126 and not started


def shown(data: bytes, limit: int = 300) -> str:
    """A daemon's bytes as one bounded, printable line for a message or an audit event."""
    text = data[:limit].decode(errors="replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


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
        answer is read as hostile: at most max_output bytes per stream are kept, and the
        whole exec ends near its timeout whatever the daemon does."""
        container = self.get(name)  # type: ignore[attr-defined]
        if container is None:
            raise SandboxError(f"no sandbox named {name}: create it first.")
        state = entry(container.attrs, 0)
        if state["status"] != "running":
            raise SandboxError(
                f"sandbox {name} is not running ({state['status']}; a daemon or outer container "
                "restart stops sandboxes): remove it and create it again."
            )
        marker = f"/tmp/.fortress-exec-{os.urandom(6).hex()}"
        # The wrapper records the PID so that a timeout can kill the process (and its
        # children) from a second exec: Docker's API cannot kill an exec.
        wrapped = ["/bin/sh", "-c", f'echo $$ > {marker}; exec "$@"', "sh", *argv]
        began = time.monotonic()
        watch = Watch(container.id)  # the sandbox's cgroup counters, watched while it runs
        try:
            for attempt in range(1, EXEC_START_TRIES + 1):
                out, err = Capped(max_output), Capped(max_output)
                try:
                    exec_id, timed_out = self._run(
                        container.id, wrapped, stdin, began + timeout, out, err, env=env,
                        workdir=safe_workdir(workdir), user=user, watch=watch,
                    )  # fmt: skip
                except StreamError as exc:
                    self._kill_exec(container, marker, user)
                    self.audit.event("exec-protocol-error", sandbox=name, error=str(exc))
                    raise
                rc = None
                if timed_out:
                    self._kill_exec(container, marker, user)
                    break
                with self.client.api.deadline(max(began + timeout - time.monotonic(), 0) + 5):
                    done = self.client.api.exec_inspect(exec_id)
                rc = done.get("ExitCode")
                if not never_started(done):
                    break
                why = shown(out.data + err.data)
                self.audit.event("exec-not-started", sandbox=name, attempt=attempt, error=why)
                pause = 0.5 * attempt
                if attempt == EXEC_START_TRIES or time.monotonic() + pause >= began + timeout:
                    raise SandboxError(
                        f"the runtime could not start the command in sandbox {name} ({attempt} "
                        f"tries; the daemon said: {why}): fix what it names (a user or "
                        "program the image lacks), else check the host's runsc and load."
                    )
                time.sleep(pause)
            duration = round(time.monotonic() - began, 3)
            result = ExecResult(
                rc=rc if isinstance(rc, int) else None,
                stdout=out.data.decode(errors="replace"), stderr=err.data.decode(errors="replace"),
                duration=duration, truncated=out.truncated or err.truncated, timed_out=timed_out,
                limits_hit=watch.fired(rc != 0 and self._oom_killed(name, began + timeout)),
            )  # fmt: skip
        finally:
            watch.close()
        self.audit.event(
            "exec", sandbox=name, owner=state["owner"], argv=argv,
            env_keys=sorted(env or {}), rc=result.rc, timed_out=timed_out,
            duration=result.duration, limits_hit=result.limits_hit,
        )  # fmt: skip
        return result

    def _oom_killed(self, name: str, ends: float) -> bool:
        """Whether Docker recorded an OOM kill of the sandbox (its cgroup, and the kernel's
        counter in it, go with the killed sandbox). Bounded like the exec; a daemon that
        does not say is "no": the command's result stands."""
        try:
            with self.client.api.deadline(max(ends - time.monotonic(), 0) + 5):
                container = self.get(name)  # type: ignore[attr-defined]
        except (SandboxError, *LOST, *MALFORMED, *ANSWERS):
            return False
        state = container.attrs.get("State") if container is not None else None
        return isinstance(state, dict) and state.get("OOMKilled") is True

    def _run(
        self, container_id: str, argv: list[str], stdin: bytes | None, ends: float,
        out: Capped, err: Capped, **options: Any,
    ) -> tuple[str, bool]:  # fmt: skip
        """Start an exec and pump it until it ends or `ends` (monotonic) passes: stdin is
        written as the socket takes it, output is read as it comes, both in one loop, so
        neither a command that writes before it reads nor a daemon that never reads can
        hold the call. Returns (exec ID, timed out)."""
        api = self.client.api
        watch = options.get("watch")
        with api.deadline(max(ends - time.monotonic(), 0) + 5):
            exec_id = api.exec_create(
                container_id, argv, stdin=stdin is not None,
                environment=options.get("env") or None, workdir=options.get("workdir"),
                user=options.get("user") or "",
            )["Id"]  # fmt: skip
            sock = api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)  # non-blocking (transport)
        pending = memoryview(stdin or b"")
        demuxer = Demuxer()

        def take(chunk: bytes) -> None:
            for stream, piece in demuxer.feed(chunk):
                (out if stream == 1 else err).add(piece)

        try:
            take(sock.early)
            if not pending:
                raw.shutdown(socket.SHUT_WR)
            while True:
                left = ends - time.monotonic()
                if left <= 0:
                    return exec_id, True
                writers = [raw] if pending else []
                watched, wait = (watch.fds, watch.timeout(left)) if watch else ([], left)
                readable, writable, notified = select.select([raw], writers, watched, wait)
                if notified:
                    watch.update()  # a limit's counter rose
                if watch:
                    watch.due()
                if writable:
                    try:
                        pending = pending[raw.send(pending[:65536]) :]
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        pending = memoryview(b"")  # the command ended without reading it all
                    if not pending:
                        try:
                            raw.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                if readable:
                    try:
                        chunk = raw.recv(65536)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        chunk = b""  # closed with stdin unread: the end, as the frames say
                    if not chunk:
                        break
                    take(chunk)
        finally:
            raw.close()
        if not demuxer.idle:
            raise StreamError(
                "the daemon's stream was cut in the middle of a frame: a hostile or broken "
                "daemon; the exec was ended."
            )
        return exec_id, False

    def _kill_exec(self, container: Any, marker: str, user: str | None) -> None:
        """Kill the timed-out exec and every descendant (stopped first, so none escapes by
        being reparented), from a second exec as the same user, itself bounded."""
        script = (
            'tree() { kill -STOP "$1" 2>/dev/null; '
            "for c in $(awk -v p=\"$1\" '$4 == p {print $1}' /proc/[0-9]*/stat 2>/dev/null); "
            'do tree "$c"; done; kill -KILL "$1" 2>/dev/null; }; '
            f'p=$(cat {marker}) && tree "$p"; rm -f {marker}'
        )
        sink = Capped(KILL_OUTPUT)
        try:
            self._run(container.id, ["/bin/sh", "-c", script], None,
                      time.monotonic() + KILL_TIMEOUT, sink, sink, user=user)  # fmt: skip
        except SandboxError:
            pass  # the caller's own error or timeout is what gets reported

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
