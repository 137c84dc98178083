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
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    COMMON_ARGS,
    SandboxError,
    from_module_params,
)


def main() -> None:
    module = AnsibleModule(argument_spec=dict(COMMON_ARGS), supports_check_mode=True)
    try:
        reaped = from_module_params(module.params).reap(dry_run=module.check_mode)
    except SandboxError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(reaped), reaped=reaped)


if __name__ == "__main__":
    main()
