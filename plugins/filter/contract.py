"""Filter: a value of the sandbox contract (labels, prefixes, defaults, limits)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import contract as _contract

DOCUMENTATION = r"""
name: contract
short_description: A value of the sandbox library's contract
description:
  - Returns the value of one name of C(plugins/module_utils/sandbox/contract.py), the one home
    of every label, prefix, default and limit that the sandbox library, the modules and the
    roles share, so that roles template it in instead of spelling it again.
options:
  _input:
    description: The name, for example C(EGRESS_POLICY_LABEL) or C(EGRESS_NETWORK_PREFIX).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Label a Docker network with its egress policy
  ansible.builtin.debug:
    msg: "{{ 'EGRESS_POLICY_LABEL' | fortress.agents.contract }}"  # io.fortress.egress.policy
"""

RETURN = r"""
_value:
  description: The contract's value (a string, a number or a list).
  type: raw
"""


def contract(name: str) -> Any:
    """The contract's value called name; one sentence naming the known ones otherwise."""
    if not isinstance(name, str) or not name.isupper() or not hasattr(_contract, name):
        known = ", ".join(sorted(n for n in vars(_contract) if n.isupper()))
        raise AnsibleFilterError(
            f"{name!r} is not a name of the sandbox contract (one of {known})."
        )
    return getattr(_contract, name)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"contract": contract}
