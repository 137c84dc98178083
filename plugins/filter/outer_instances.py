"""Filter: the outer_sandbox role's instances with every default and derived name filled in."""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.contract import (
    EGRESS_NETWORK_PREFIX,
)

DOCUMENTATION = r"""
name: outer_instances
short_description: Expand the outer_sandbox role's instance list
description:
  - Merges each item of O(_input) over O(defaults), expands C({name}) in the network name and
    adds the derived names the role uses for the instance (container, volume, host paths).
  - An item with C(egress) (an egress policy's name) gets the network the egress role makes
    for it on that policy, C(fortress-egress-<policy>.<name>), instead of its C(network);
    tenants on one policy never share a network.
  - Fails with one sentence when an item has no valid name, two items share a name, two
    items share a network of their own (C(network), not an egress policy's) - tenants never
    share an L2 segment - or a network of its own is named like an egress network.
positional: defaults, config_dir, socket_root
options:
  _input:
    description: The instances (C(outer_sandbox_instances)); each needs C(name).
    type: list
    elements: dict
    required: true
  defaults:
    description: Per-instance defaults (C(outer_sandbox_instance_defaults)).
    type: dict
    required: true
  config_dir:
    description: Host directory holding one configuration directory per instance.
    type: str
    required: true
  socket_root:
    description: Host directory holding one socket directory per instance.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Expanded instances
  ansible.builtin.debug:
    msg: >-
      {{ [{'name': 'tenant-a', 'memory': '1g'}]
         | fortress.agents.outer_instances({'memory': '2g', 'network': 'fortress-outer-{name}'},
                                           '/etc/fortress/outer', '/run/fortress/outer') }}
"""

RETURN = r"""
_value:
  description:
    - The instances, each with the merged options plus C(container), C(volume), C(config_dir),
      C(socket_dir) and C(socket).
  type: list
  elements: dict
"""

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,40}$")
POLICY = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")


def outer_instances(
    items: list[dict[str, Any]], defaults: dict[str, Any], config_dir: str, socket_root: str
) -> list[dict[str, Any]]:
    """Each instance merged over the defaults, with its derived names."""
    seen: set[str] = set()
    out = []
    for item in items or []:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise AnsibleFilterError(
                f"outer_sandbox_instances: {name!r} is not a valid instance name: use 1-41 "
                "lower-case letters, digits, '.', '_' or '-', starting with a letter or digit."
            )
        if name in seen:
            raise AnsibleFilterError(
                f"outer_sandbox_instances: the name {name!r} is used twice: give each instance "
                "its own name."
            )
        seen.add(name)
        merged = {**defaults, **item}
        network = merged.get("network")
        egress = merged.get("egress")
        if egress is not None:
            if not isinstance(egress, str) or not POLICY.fullmatch(egress):
                raise AnsibleFilterError(
                    f"outer_sandbox_instances: instance {name!r}: egress {egress!r} is not an "
                    "egress policy name (1-12 lower-case letters, digits or '-')."
                )
            network = f"{EGRESS_NETWORK_PREFIX}{egress}.{name}"
        out.append(
            {
                **merged,
                "egress": egress,
                "network": network.replace("{name}", name) if network else None,
                "container": f"fortress-outer-{name}",
                "volume": f"fortress-outer-{name}-docker",
                "config_dir": f"{config_dir.rstrip('/')}/{name}",
                "socket_dir": f"{socket_root.rstrip('/')}/{name}",
                "socket": f"{socket_root.rstrip('/')}/{name}/docker.sock",
            }
        )
    owners: dict[str, str] = {}
    for instance in out:
        network = instance["network"]
        if network and not instance["egress"] and network.startswith(EGRESS_NETWORK_PREFIX):
            raise AnsibleFilterError(
                f"outer_sandbox_instances: instance {instance['name']!r}: network {network!r} "
                f"is named like an egress network ({EGRESS_NETWORK_PREFIX}...), which only the "
                "egress role makes: give the instance egress: POLICY, or another network name."
            )
        if network and not instance["egress"] and instance.get("state") != "absent":
            if network in owners:
                raise AnsibleFilterError(
                    f"outer_sandbox_instances: instances {owners[network]!r} and "
                    f"{instance['name']!r} both name network {network!r}: give each its own "
                    "(tenants never share one), for example 'fortress-outer-{name}'."
                )
            owners[network] = instance["name"]
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"outer_instances": outer_instances}
