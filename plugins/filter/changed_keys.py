"""Filter: top-level keys whose values differ between two dictionaries."""

from __future__ import annotations

import json
from typing import Any

DOCUMENTATION = r"""
name: changed_keys
short_description: Top-level keys whose values differ between two dictionaries
description:
  - Returns the sorted list of top-level keys that are added, removed or whose values differ
    between O(old) (the input) and O(new).
  - Used by the docker_engine role to decide whether a daemon.json change can be applied by
    a reload (SIGHUP) or needs a restart.
positional: new
options:
  _input:
    description:
      - The old dictionary, or the text of a JSON document.
      - Text that is not a JSON object counts as empty.
    type: raw
    required: true
  new:
    description: The new dictionary.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Keys that changed
  ansible.builtin.debug:
    # ['b', 'c']
    msg: "{{ {'a': 1, 'b': 2} | fortress.agents.changed_keys({'a': 1, 'b': 3, 'c': 4}) }}"
"""

RETURN = r"""
_value:
  description: Sorted top-level keys that differ.
  type: list
  elements: str
"""


def changed_keys(old: dict[str, Any] | str | None, new: dict[str, Any] | None) -> list[str]:
    """Sorted top-level keys that are added, removed or changed from ``old`` to ``new``.

    ``old`` may be the raw text of a JSON file; text that is not a JSON object counts as
    empty, so every key of ``new`` is reported as changed.
    """
    if isinstance(old, str):
        try:
            old = json.loads(old)
        except ValueError:
            old = {}
    old = old if isinstance(old, dict) else {}
    new = new or {}
    keys = set(old) | set(new)
    return sorted(k for k in keys if (k in old) != (k in new) or old.get(k) != new.get(k))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"changed_keys": changed_keys}
