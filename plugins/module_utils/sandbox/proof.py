# Copyright: Fortress developers
# Apache-2.0
"""The runtime proof on the adapter: a sandbox runs in gVisor, proven from the host before
anything of the caller's runs in it (runtime.py reads the daemon, the process and its
binary). Only then is the sandbox's init told to run its command (contract.SANDBOX_INIT).

What this guards against: a substituted or misconfigured runtime (runc, a debug or strace
runsc, a runsc binary no role installed). What it cannot: root in an outer container runs
that outer's daemon and can fake a process that passes every look from here."""

from __future__ import annotations

import time
from typing import Any

from . import mounts
from .contract import EXEC_GRACE, INIT_TARGET
from .errors import ANSWERS, MALFORMED, SandboxError, daemon_call
from .runtime import (
    check_runsc_runtime,
    process_argv,
    refused_sandbox_flags,
    runsc_sandbox_pids,
    unpublished_binaries,
)
from .stream import ExecOutput, shown


class RuntimeMixin:
    """The runtime check before create and the proof after start, on the adapter
    (client.Sandboxes)."""

    client: Any
    host_daemon: bool
    runsc_digests: str

    @daemon_call("the runtime check")
    def check_runtime(self, runtime: str) -> None:
        info = self.client.info()
        check_runsc_runtime(runtime, info.get("Runtimes") if isinstance(info, dict) else None)

    @daemon_call("start")
    def start(self, container: Any) -> None:
        """Start and prove from the host side that it runs in gVisor under a published runsc
        with allowed flags; else remove it. Only then is its init told to run its command:
        under any other runtime nothing of the caller's ran. A sandbox whose staged mounts
        are gone is refused (Docker would refuse it less clearly)."""
        gone = mounts.missing(container.attrs) if self.host_daemon else []
        if gone:
            raise SandboxError(
                f"sandbox {container.name} cannot start: its staged mounts ({', '.join(gone)}) "
                "are gone (a reboot empties /run), so remove it and create it again."
            )
        container.start()
        try:
            container.reload()
            refusal = self._unproven(container, wait=10)[0]
        except BaseException:
            self._discard(container)  # type: ignore[attr-defined]
            raise
        if refusal:
            note = self._discard(container) or " It was removed."  # type: ignore[attr-defined]
            raise SandboxError(
                f"sandbox {container.name} {refusal} (nothing but Fortress's init ran in it: its "
                f"command was never started and no exec was run).{note}"
            )
        if (container.attrs.get("Config") or {}).get("Cmd"):
            self._go(container)

    def prove_running(self, container: Any) -> list[int]:
        """The runsc-sandbox processes of a running sandbox, proven again before each exec
        (a sandbox whose proof failed at start and that its runtime would not remove is
        never used); else one sentence."""
        refusal, pids = self._unproven(container, wait=0)
        if refusal:
            raise SandboxError(
                f"sandbox {container.name} {refusal}; nothing was run in it: remove it and "
                "create it again."
            )
        return pids

    def _unproven(self, container: Any, wait: float) -> tuple[str, list[int]]:
        """Why the started container is not proven to run in gVisor (its runsc-sandbox
        processes, looked for up to `wait` seconds: their flags and binaries), or '', with
        those processes."""
        runtime = container.attrs["HostConfig"].get("Runtime", "")
        deadline = time.monotonic() + wait
        pids = runsc_sandbox_pids(container.id)
        while not pids:
            if time.monotonic() >= deadline or not runtime.startswith("runsc"):
                return (
                    f"did not start under gVisor (runtime {runtime!r}, no runsc-sandbox process "
                    "for it): its daemon's runsc runtime is not gVisor, fix the daemon's runtimes"
                ), pids
            time.sleep(0.05)
            pids = runsc_sandbox_pids(container.id)
        refused = sorted({f for pid in pids for f in refused_sandbox_flags(process_argv(pid))})
        if refused:
            return (
                f"runs under runsc with {' '.join(refused)} (read from its runsc-sandbox process "
                "on this host), which sandboxes never run under: the daemon's runsc is not what "
                "its runtimes say, so fix its runsc binary or daemon.json"
            ), pids
        try:
            unknown = unpublished_binaries(pids, self.runsc_digests, host=self.host_daemon)
        except SandboxError as exc:  # no digests to compare with, or the process is gone
            return f"cannot be proven to run in gVisor ({str(exc).rstrip('.')})", pids
        if unknown:
            return (
                f"runs under a runsc binary (sha256 {', '.join(d[:64] for d in unknown)}) that "
                f"no role published in {self.runsc_digests}: its daemon runs a runsc that "
                "site.yml did not install (substituted, or an outer image the outer_sandbox "
                "role did not read), so converge site.yml or fix the daemon's runsc"
            ), pids
        return "", pids

    def _go(self, container: Any) -> None:
        """Tell the proven sandbox's init to run its command; else remove the sandbox (a
        daemon that is gone is the caller's error: daemon_call says so)."""
        sink = ExecOutput(4096)
        try:
            self._run(container.id, [INIT_TARGET, "go"], None,  # type: ignore[attr-defined]
                      time.monotonic() + EXEC_GRACE, sink)  # fmt: skip
            done = self.client.api.exec_inspect(sink.exec_id)
        except (*MALFORMED, *ANSWERS):
            done = {}
        if not isinstance(done, dict) or done.get("ExitCode") != 0:
            said = shown(bytes(sink.err.data) or bytes(sink.raw.data))
            note = self._discard(container) or " It was removed."  # type: ignore[attr-defined]
            raise SandboxError(
                f"sandbox {container.name} could not start its command ({said}): fix the "
                f"command (or the image), or make the sandbox's /tmp writable.{note}"
            )
