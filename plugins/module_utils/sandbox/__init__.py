# Copyright: Fortress developers
# Apache-2.0
"""Agent sandboxes: gVisor containers with safe defaults, behind one adapter class.

The Ansible modules ``fortress.agents.sandbox*`` are thin front ends to this package, and
agent frameworks import it from plain Python::

    from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
        Sandboxes, SandboxSpec)

    boxes = Sandboxes()                          # the host's dockerd, checked first
    result = boxes.task(SandboxSpec(image="python:3.12-slim", owner="agent-7"),
                        ["python3", "-c", "print(6 * 7)"], timeout=30)
    print(result.rc, result.stdout)

Ownership and expiry live in container labels (contract.py), so listing and reaping never
touch containers this package did not create. Every sandbox runs under a runsc runtime,
verified from the host side after start (its flags, and its binary against the digests the
roles published); anything else is refused and removed before its command runs.

Layout, one concern per file: contract (labels, prefixes, defaults, limits), errors, spec
(what a sandbox is; input checks), guards (socket, mounts, in-sandbox paths), runtime (what
the daemon says of a runtime; a runsc-sandbox process's flags and binary), proof (the
runtime proven after start, then the sandbox's command), hostfs (host files a sandbox cannot
redirect), mounts (mount sources staged from their checked descriptors), stream (the exec
stream read as hostile), transport (the Docker client, every reply bounded), listing
(listing and reaping, inspect data read as hostile), egress (the egress contract on the
sandbox side), audit, client (the adapter: lookups, create, remove), commands (exec, task),
files (copies), module (the modules' shared Ansible front; imports Ansible only when used).
"""

from __future__ import annotations

from .audit import AuditLog
from .client import Sandboxes
from .contract import *  # noqa: F403 - the contract's names are the package's
from .errors import SandboxError, StreamError
from .guards import check_mount, check_socket, open_socket, safe_path, safe_workdir
from .hostfs import parts_below, verified_path
from .listing import expiry
from .module import COMMON_ARGS, from_module_params
from .runtime import published_digests, runsc_sandbox_pids
from .spec import ExecResult, Mount, SandboxSpec, check_ttl, parse_mode, parse_size
from .stream import Capped, Demuxer
from .transport import DOCKER_IMPORT_ERROR, HAS_DOCKER

__all__ = [
    "COMMON_ARGS",
    "DOCKER_IMPORT_ERROR",
    "HAS_DOCKER",
    "AuditLog",
    "Capped",
    "Demuxer",
    "ExecResult",
    "Mount",
    "SandboxError",
    "SandboxSpec",
    "Sandboxes",
    "StreamError",
    "check_mount",
    "check_socket",
    "check_ttl",
    "expiry",
    "from_module_params",
    "open_socket",
    "parse_mode",
    "parse_size",
    "parts_below",
    "published_digests",
    "runsc_sandbox_pids",
    "safe_path",
    "safe_workdir",
    "verified_path",
]
