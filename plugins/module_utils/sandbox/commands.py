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
    EXEC_GRACE,
    EXEC_START_TRIES,
    INIT_TARGET,
    KEEP_ALIVE,
)
from .errors import ANSWERS, LOST, MALFORMED, SandboxError, StreamError, daemon_call
from .guards import safe_workdir
from .limits import Watch
from .listing import entry
from .spec import ExecResult, SandboxSpec
from .stream import ExecOutput, init_status, shown


def never_started(inspected: dict[str, Any]) -> bool:
    """Docker's answer for an exec its runtime failed to start: exit code 126 and no
    process ID (a command that ran and exited 126 has one)."""
    started = inspected.get("Pid") or inspected.get("Running")
    return inspected.get("ExitCode") == 126 and not started


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
        """Run argv in the sandbox under its init (contract.INIT_TARGET): a new session and a
        child subreaper, so every process argv starts stays within its reach. The init kills
        them all at the timeout; one still alive when argv exits has escaped: it is killed,
        the result says escaped and the sandbox is stopped, as it is when the init does not
        report (the command killed it) within EXEC_GRACE of the timeout. The daemon's answer
        is read as hostile: at most max_output bytes per stream are kept."""
        container = self.get(name)  # type: ignore[attr-defined]
        if container is None:
            raise SandboxError(f"no sandbox named {name}: create it first.")
        state = entry(container.attrs, 0)
        if state["status"] != "running":
            raise SandboxError(
                f"sandbox {name} is not running ({state['status']}; a daemon or outer container "
                "restart stops sandboxes): remove it and create it again."
            )
        began = time.monotonic()
        ends = began + timeout
        settle = ends + EXEC_GRACE  # the init's report, and every look after it, by then
        pids = self.prove_running(container)  # type: ignore[attr-defined]
        # The sandbox's cgroup counters, watched while it runs.
        watch = Watch(container.id, pids=pids)
        try:
            for attempt in range(1, EXEC_START_TRIES + 1):
                sink = ExecOutput(max_output)
                left_ms = max(int((ends - time.monotonic()) * 1000), 1)
                wrapped = [INIT_TARGET, "exec", str(left_ms), "--", *argv]
                try:
                    late = self._run(
                        container.id, wrapped, stdin, settle, sink, env=env,
                        workdir=safe_workdir(workdir), user=user, watch=watch,
                    )  # fmt: skip
                except StreamError as exc:
                    if not self._not_started(sink.exec_id, settle):
                        self.audit.event("exec-protocol-error", sandbox=name, error=str(exc))
                        raise
                    late = False
                if sink.status is None and not late and self._not_started(sink.exec_id, settle):
                    why = shown(bytes(sink.raw.data))
                    self.audit.event("exec-not-started", sandbox=name, attempt=attempt, error=why)
                    pause = 0.5 * attempt
                    if attempt == EXEC_START_TRIES or time.monotonic() + pause >= ends:
                        raise SandboxError(
                            f"the runtime could not start the command in sandbox {name} "
                            f"({attempt} tries; the daemon said: {why}): fix what it names "
                            "(a user or program the image lacks), else check the host's runsc "
                            "and load."
                        )
                    time.sleep(pause)
                    continue
                break
            # No status: the init was killed (by the command) or did not end in time.
            rc, timed_out, escaped = (
                init_status(sink.status) if sink.status is not None else (None, late, True)
            )
            if escaped:
                self._stop_escaped(container, name, settle)
            duration = round(time.monotonic() - began, 3)
            result = ExecResult(
                rc=rc, stdout=sink.out.data.decode(errors="replace"),
                stderr=sink.err.data.decode(errors="replace"), duration=duration,
                truncated=sink.truncated, timed_out=timed_out, escaped=escaped,
                limits_hit=watch.fired(rc != 0 and self._oom_killed(name, settle)),
            )  # fmt: skip
        finally:
            watch.close()
        self.audit.event(
            "exec", sandbox=name, owner=state["owner"], argv=argv,
            env_keys=sorted(env or {}), rc=result.rc, timed_out=timed_out, escaped=escaped,
            duration=result.duration, limits_hit=result.limits_hit,
        )  # fmt: skip
        return result

    def _not_started(self, exec_id: str, ends: float) -> bool:
        """Whether the runtime never started the exec (Docker: 126 and no PID); bounded. An
        answer that does not say is "it started"; a daemon that is gone is the caller's
        error (daemon_call says so in one sentence)."""
        if not exec_id:
            return False
        try:
            with self.client.api.deadline(max(ends - time.monotonic(), 0) + 1):
                return never_started(self.client.api.exec_inspect(exec_id))
        except (*MALFORMED, *ANSWERS):
            return False

    def _stop_escaped(self, container: Any, name: str, ends: float) -> None:
        """Stop a sandbox in which an exec left a process behind or lost its init's report
        (one already gone is stopped; a daemon that is gone is the caller's error)."""
        self.audit.event("exec-escaped", sandbox=name)
        try:
            with self.client.api.deadline(max(ends - time.monotonic(), 0) + 1):
                self.client.api.kill(container.id)
        except (*MALFORMED, *ANSWERS):
            pass

    def _oom_killed(self, name: str, ends: float) -> bool:
        """Whether Docker recorded an OOM kill of the sandbox (its cgroup, and the kernel's
        counter in it, go with the killed sandbox). Bounded like the exec; a daemon that
        does not say is "no": the command's result stands."""
        try:
            with self.client.api.deadline(max(ends - time.monotonic(), 0) + 1):
                container = self.get(name)  # type: ignore[attr-defined]
        except (SandboxError, *LOST, *MALFORMED, *ANSWERS):
            return False
        state = container.attrs.get("State") if container is not None else None
        return isinstance(state, dict) and state.get("OOMKilled") is True

    def _run(
        self, container_id: str, argv: list[str], stdin: bytes | None, ends: float,
        sink: ExecOutput, **options: Any,
    ) -> bool:  # fmt: skip
        """Start an exec and pump it until it ends or `ends` (monotonic) passes: stdin is
        written as the socket takes it, output is read as it comes, both in one loop, so
        neither a command that writes before it reads nor a daemon that never reads can
        hold the call. Returns whether `ends` passed first."""
        api = self.client.api
        watch = options.get("watch")
        with api.deadline(max(ends - time.monotonic(), 0) + 5):
            sink.exec_id = api.exec_create(
                container_id, argv, stdin=stdin is not None,
                environment=options.get("env") or None, workdir=options.get("workdir"),
                user=options.get("user") or "",
            )["Id"]  # fmt: skip
            sock = api.exec_start(sink.exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)  # non-blocking (transport)
        pending = memoryview(stdin or b"")
        try:
            sink.take(sock.early)
            if not pending:
                raw.shutdown(socket.SHUT_WR)
            while True:
                left = ends - time.monotonic()
                if left <= 0:
                    return True
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
                    sink.take(chunk)
        finally:
            raw.close()
        if not sink.idle:
            raise StreamError(
                "the daemon's stream was cut in the middle of a frame: a hostile or broken "
                "daemon; the exec was ended."
            )
        return False

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
