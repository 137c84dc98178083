"""Filter: the host's runsc runtimes, rewritten for an outer container's inner daemon."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: inner_runtimes
short_description: The host's runsc runtimes for an outer container's inner daemon
description:
  - Takes the runtimes the gvisor role registered on the host (name to C(path) and
    C(runtimeArgs)) and returns them with O(path) as the binary and O(extra_args) appended,
    keeping the flags' order so that the rendered daemon.json is the same on every run.
  - Used by the outer_sandbox role (C(--ignore-cgroups) in its userns mode).
positional: path, extra_args
options:
  _input:
    description: The host's runtimes, for example C(gvisor_docker_engine_contribution.runtimes).
    type: dict
    required: true
  path:
    description: Path of runsc inside the outer image.
    type: str
    required: true
  extra_args:
    description: Flags appended to every runtime (once).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Inner runtimes
  ansible.builtin.debug:
    msg: >-
      {{ {'runsc': {'path': '/usr/local/bin/runsc', 'runtimeArgs': ['--network=host']}}
         | fortress.agents.inner_runtimes('/usr/bin/runsc', ['--ignore-cgroups']) }}
"""

RETURN = r"""
_value:
  description: Runtime name to C(path) and C(runtimeArgs), sorted by name.
  type: dict
"""


def inner_runtimes(
    host_runtimes: dict[str, dict[str, Any]], path: str, extra_args: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The host's runsc runtimes for an inner daemon: the image's binary, the same flags in
    the same order, then `extra_args` (deterministic, so daemon.json renders identically)."""
    extra = list(extra_args or [])
    return {
        name: {
            "path": path,
            "runtimeArgs": [a for a in rt.get("runtimeArgs", []) if a not in extra] + extra,
        }
        for name, rt in sorted((host_runtimes or {}).items())
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"inner_runtimes": inner_runtimes}
