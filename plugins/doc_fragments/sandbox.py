# Copyright: Fortress developers
# Apache-2.0
"""Options every fortress.agents.sandbox* module shares."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_socket:
    description:
      - The Docker daemon to use, as the path of its unix socket on the managed host (for
        example an outer container's host-side socket).
      - It must be a socket owned by root and not be reached through a symlink; anything
        else is refused, so a compromised outer container cannot redirect the module to
        another daemon.
    type: path
    default: /run/docker.sock
  workspace_root:
    description:
      - Mount sources must lie below this directory (never sockets, never system paths).
    type: path
    default: /var/lib/fortress/workspaces
  audit_log:
    description:
      - JSON-lines audit log of lifecycle events on the managed host (rotated at 10 MiB,
        five files kept). Environment values never appear in it, only their names.
      - Set to an empty string to disable.
    type: path
    default: /var/log/fortress/sandbox-audit.log
requirements:
  - The Docker SDK for Python (C(python3-docker)) on the managed host.
  - A Docker daemon with a runsc runtime (the fortress.agents.gvisor role registers it).
notes:
  - Sandboxes run only under a runsc runtime. After start the module checks from the host
    side that a runsc-sandbox process carries the container's ID; if not, it removes the
    container and fails.
"""
