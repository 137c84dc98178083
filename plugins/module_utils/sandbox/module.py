# Copyright: Fortress developers
# Apache-2.0
"""The shared Ansible front of the fortress.agents.sandbox* modules: their common options,
the adapter built from them, and one way to fail (one sentence, never a traceback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .client import Sandboxes
from .contract import (
    DEFAULT_AUDIT_LOG,
    DEFAULT_FINGERPRINT_KEY,
    DEFAULT_SOCKET,
    DEFAULT_WORKSPACE_ROOT,
    MAX_TTL,
)
from .errors import SandboxError

# Argument spec of the options in the sandbox doc fragment, shared by every module.
COMMON_ARGS: dict[str, dict[str, Any]] = {
    "docker_socket": {"type": "path", "default": DEFAULT_SOCKET},
    "docker_socket_owner": {"type": "int", "default": 0},
    "workspace_root": {"type": "path", "default": DEFAULT_WORKSPACE_ROOT},
    "audit_log": {"type": "path", "default": DEFAULT_AUDIT_LOG},
    "fingerprint_key": {"type": "path", "default": DEFAULT_FINGERPRINT_KEY, "no_log": False},
    "max_ttl": {"type": "int", "default": MAX_TTL},
}


def from_module_params(params: dict[str, Any]) -> Sandboxes:
    """The adapter for an Ansible module's common options."""
    return Sandboxes(
        socket_path=params["docker_socket"],
        socket_owner=params["docker_socket_owner"],
        workspace_root=params["workspace_root"],
        audit_log=params["audit_log"] or None,
        fingerprint_key=params.get("fingerprint_key") or DEFAULT_FINGERPRINT_KEY,
        max_ttl=params.get("max_ttl") or MAX_TTL,
    )


def run_module(argument_spec: dict[str, Any], logic: Callable[[Any, Sandboxes], dict[str, Any]],
               audit: bool = True, **options: Any) -> None:  # fmt: skip
    """Build the module (its own options and the common ones) and the adapter, run
    logic(module, boxes) and exit with what it returns; a SandboxError or OSError becomes
    one failed sentence. logic may call module.fail_json itself for outcomes that carry
    results. audit=False: a read-only module, which writes no audit line."""
    from ansible.module_utils.basic import AnsibleModule  # only modules need Ansible

    module = AnsibleModule(argument_spec={**argument_spec, **COMMON_ARGS}, **options)
    try:
        params = module.params if audit else {**module.params, "audit_log": ""}
        result = logic(module, from_module_params(params))
    except SandboxError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename or 'the host'}: {exc.strerror}.")
    module.exit_json(**result)
