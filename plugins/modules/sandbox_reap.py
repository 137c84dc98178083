#!/usr/bin/python
# Copyright: Fortress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: destroy agent sandboxes whose TTL has passed."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sandbox_reap
short_description: Destroy the agent sandboxes that outlived their TTL
version_added: 0.1.0
description:
  - Removes every sandbox Fortress created on the daemon whose C(io.fortress.sandbox.expires)
    label is in the past. Containers Fortress did not create are never touched.
  - In check mode it lists what would go and removes nothing.
extends_documentation_fragment:
  - fortress.agents.sandbox
attributes:
  check_mode:
    support: full
    description: Lists the expired sandboxes without removing them.
  diff_mode:
    support: none
    description: RV(reaped) lists what goes.
  idempotent:
    support: full
    description: A second run finds nothing more to reap (until another TTL passes).
options: {}
author:
  - Fortress developers (@fortress)
"""

EXAMPLES = r"""
- name: Reap expired sandboxes on every agent host
  fortress.agents.sandbox_reap:
"""

RETURN = r"""
reaped:
  description: Names of the sandboxes removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
skipped:
  description:
    - One sentence per sandbox passed over because its expiry label is not a time (a broken
      or planted label); the rest are still reaped. Also given as warnings.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.fortress.agents.plugins.module_utils.sandbox.module import run_module


def reap(module, boxes) -> dict:
    reaped = boxes.reap(dry_run=module.check_mode)
    for skipped in boxes.skipped:
        module.warn(f"not reaped: {skipped}")
    return {"changed": bool(reaped), "reaped": reaped, "skipped": boxes.skipped}


def main() -> None:
    run_module({}, reap, supports_check_mode=True)


if __name__ == "__main__":
    main()
