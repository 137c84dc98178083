"""Filter: remove top-level keys whose value is null."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: drop_none
short_description: Remove top-level keys whose value is null
description:
  - Returns a copy of the input dictionary without the top-level keys whose value is null.
  - The docker_engine role uses it so that a user deletes a default daemon.json key by setting
    it to null in C(docker_engine_daemon_options).
options:
  _input:
    description: The dictionary.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Drop null keys
  ansible.builtin.debug:
    msg: "{{ {'icc': false, 'bip': none} | fortress.agents.drop_none }}"  # {'icc': false}
"""

RETURN = r"""
_value:
  description: The dictionary without null-valued top-level keys.
  type: dict
"""


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    """Remove top-level keys whose value is None (how a user deletes a default key)."""
    return {k: v for k, v in data.items() if v is not None}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"drop_none": drop_none}
