"""Filter: the runsc flags of a list that sandboxes never run under."""

from __future__ import annotations

from typing import Any

from ansible_collections.fortress.agents.plugins.module_utils.sandbox.runtime import (
    refused_runsc_flags as _refused,
)

DOCUMENTATION = r"""
name: refused_runsc_flags
short_description: The runsc flags of a runtime that the sandbox library refuses
description:
  - Returns the items of the input (a runtime's C(runtimeArgs) as daemon.json carries them)
    that are not in the sandbox contract's allowlist (C(RUNSC_FLAGS) in
    C(plugins/module_utils/sandbox/contract.py)). Each item must be C(--NAME=VALUE) or
    C(--NAME) with an allowed name and one of that name's allowed values. C(--debug),
    C(--strace), C(--host-uds=all) or C(--net-raw) are refused, and so is a flag and its
    value given as two items, or a value with whitespace or a shell character (Docker runs a
    runtime with arguments through a shell script that splits them).
  - The library checks the same list against the daemon's runtimes before it creates a
    sandbox; the gvisor role checks its own flags with this filter when a host converges,
    so a host is never configured with a runtime no sandbox may use.
options:
  _input:
    description: The runtime's arguments.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse flags no sandbox may run under
  ansible.builtin.assert:
    that: runtime_args | fortress.agents.refused_runsc_flags | length == 0
  vars:
    runtime_args: ["--platform=systrap", "--host-uds=none", "--network=sandbox"]
"""

RETURN = r"""
_value:
  description: The refused items, in their order (empty when all are allowed).
  type: list
  elements: str
"""


def refused_runsc_flags(args: Any) -> list[str]:
    return _refused(list(args) if isinstance(args, (list, tuple)) else args)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"refused_runsc_flags": refused_runsc_flags}
