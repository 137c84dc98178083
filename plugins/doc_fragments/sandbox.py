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
      - It must be a socket owned by O(docker_socket_owner) (root by default) and not be
        reached through a symlink; anything else is refused, so a compromised outer
        container cannot redirect the module to another daemon. The socket is opened once,
        checked through that descriptor, and every connection goes through it, so a socket
        renamed over the path afterwards gets no request.
    type: path
    default: /run/docker.sock
  docker_socket_owner:
    description:
      - The uid that must own O(docker_socket). C(0) (root) everywhere except for an outer
        container in the outer_sandbox role's C(userns) mode, whose daemon creates its socket
        as its own root, an unprivileged host uid (the role prints it; usually 100000).
    type: int
    default: 0
  workspace_root:
    description:
      - Mount sources and host files copied must lie below this directory (never sockets,
        never system paths). Below it no symlink is followed at any component; a path that
        crosses one is refused (the root itself may be a symlink the operator made).
    type: path
    default: /var/lib/fortress/workspaces
  audit_log:
    description:
      - JSON-lines audit log of lifecycle events on the managed host (rotated at 10 MiB,
        five files kept). Environment values never appear in it, only their names.
      - Set to an empty string to disable.
    type: path
    default: /var/log/fortress/sandbox-audit.log
  fingerprint_key:
    description:
      - The managed host's key for the spec fingerprint label (32 random bytes, created mode
        C(0600) on first use). Sandboxes made under another key are recreated once.
    type: path
    default: /var/lib/fortress/sandbox-fingerprint.key
  max_ttl:
    description:
      - The longest TTL a sandbox may ask for, in seconds; a longer one is refused with the
        limit in the message. Listing and reaping also count a sandbox as expired once its
        creation time plus this has passed, whatever its expiry label says.
      - The host's own reaper applies the sandbox_reaper role's C(sandbox_reaper_max_ttl)
        (the same default), so a caller that raises this option gets no longer life there.
    type: int
    default: 86400
requirements:
  - The Docker SDK for Python (C(python3-docker)) on the managed host.
  - A Docker daemon with a runsc runtime (the fortress.agents.gvisor role registers it).
notes:
  - Sandboxes run only under a runsc runtime. After start the module checks from the host
    side that a runsc-sandbox process carries the container's ID; if not, it removes the
    container and fails. The check runs after start, so an image entrypoint or the command
    under a substituted runtime has already started by then (docs/threat-model.md).
"""
