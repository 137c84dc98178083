#!/usr/bin/python
# Copyright: Fortress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: list agent sandboxes."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sandbox_info
short_description: List agent sandboxes, with their owner and whether their TTL has passed
version_added: 0.1.0
description:
  - Lists the sandboxes Fortress created on the daemon (containers with the label
    C(io.fortress.sandbox=1)); other containers are never listed.
extends_documentation_fragment:
  - fortress.agents.sandbox
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
    description: Read-only.
  idempotent:
    support: full
    description: Read-only.
options:
  owner:
    description: Only sandboxes of this owner.
    type: str
  labels:
    description: Only sandboxes carrying all these labels.
    type: dict
    default: {}
author:
  - Fortress developers (@fortress)
"""

EXAMPLES = r"""
- name: Sandboxes of agent-42
  fortress.agents.sandbox_info:
    owner: agent-42
  register: found

- name: Those past their TTL
  ansible.builtin.debug:
    msg: "{{ found.sandboxes | selectattr('expired') | map(attribute='name') }}"
"""

# The container fields below are the ones fortress.agents.sandbox returns too; RETURN cannot
# take a doc fragment, so the documentation repeats them.
# pylint: disable-next=duplicate-code
RETURN = r"""
sandboxes:
  description: The sandboxes found.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container name.
      type: str
    id:
      description: Container ID.
      type: str
    status:
      description: Docker's status.
      type: str
    image:
      description: Image the sandbox was created from.
      type: str
    owner:
      description: Owner label.
      type: str
    expires:
      description:
        - Epoch seconds when the TTL passes - its expiry label, but never later than its
          creation time plus O(max_ttl); null when the container is malformed (see
          RV(sandboxes[].error)).
      type: float
    expired:
      description: Whether the TTL has passed.
      type: bool
    error:
      description:
        - Only when the container is malformed - its inspect data (from a hostile or broken
          daemon) or its expiry label (missing, not a finite time) - what is wrong with it.
          The reaper reports such a sandbox and skips it; inspect it and remove it by hand.
      type: str
    runtime:
      description: The runtime Docker recorded.
      type: str
    labels:
      description: All labels.
      type: dict
"""

from ansible_collections.fortress.agents.plugins.module_utils.sandbox.module import run_module


def info(module, boxes) -> dict:
    p = module.params
    return {"changed": False, "sandboxes": boxes.list(owner=p["owner"], labels=p["labels"])}


def main() -> None:
    run_module(
        {"owner": {"type": "str"}, "labels": {"type": "dict", "default": {}}},
        info,
        audit=False,
        supports_check_mode=True,
    )


if __name__ == "__main__":
    main()
