# Copyright: Fortress developers
# Apache-2.0
"""The egress contract on the sandbox side: which network mode, runtime and proxy a sandbox
on an egress policy gets, from the labels its daemon carries (contract.py)."""

from __future__ import annotations

from .contract import EGRESS_POLICY_LABEL, EGRESS_PROXY_LABEL, EGRESS_RUNTIME_LABEL, PROXY_ENV
from .errors import SandboxError


def egress_plan(daemon_labels: list[str], policy: str) -> tuple[str, str, dict[str, str]]:
    """(network mode, runtime, proxy environment) for a sandbox on egress policy `policy`
    of a daemon labelled daemon_labels ("key=value" strings, as `docker info` gives)."""
    labels = dict(str(item).partition("=")[::2] for item in daemon_labels)
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
