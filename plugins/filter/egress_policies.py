"""Filter: the egress role's policies, validated, with their normalized rules."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: egress_policies
short_description: Validate the egress role's policies and normalize their rules
description:
  - Validates each policy of O(_input) and its C(allow) rules and adds the normalized rules.
  - "Rules: C(HOST) or C(HOST:PORT) (port 443 when omitted), C(*.DOMAIN[:PORT]) for any name
    below DOMAIN (not DOMAIN itself), C(A.B.C.D/N:PORT) and C([IPV6/N]:PORT) for addresses.
    A host rule never matches an IP literal: the proxy refuses IP literals unless an address
    rule allows them."
  - The networks (one per tenant and policy) come from P(fortress.agents.egress_networks#filter).
  - Fails with one sentence naming the policy, the bad value and the fix.
options:
  _input:
    description: The policies (C(egress_policies)); each needs C(name) and C(allow).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Validated policies
  ansible.builtin.debug:
    msg: >-
      {{ [{'name': 'llm', 'allow': ['api.openai.com', '*.pythonhosted.org', '10.0.5.0/24:5432']}]
         | fortress.agents.egress_policies }}
"""

RETURN = r"""
_value:
  description:
    - Each policy with C(name), C(allow) and C(rules) (each C(host), C(suffix) or C(cidr), with
      C(port)).
  type: list
  elements: dict
"""

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
HOST_RULE = re.compile(r"^(?P<host>[^:\[\]]+)(?::(?P<port>[0-9]+))?$")
CIDR_RULE = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[0-9.]+/[0-9]+)):(?P<port>[0-9]+)$")


def _fail(policy: str, msg: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"egress_policies: policy {policy!r}: {msg}")


def _port(policy: str, rule: str, text: str | None, default: int | None) -> int:
    if text is None:
        if default is None:
            raise _fail(policy, f"rule {rule!r} needs a port: write ADDRESS/N:PORT.")
        return default
    port = int(text)
    if not 1 <= port <= 65535:
        raise _fail(policy, f"rule {rule!r}: port {port} is not between 1 and 65535.")
    return port


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_rule(policy: str, rule: Any) -> dict[str, Any]:
    """One allow rule, normalized: {host|suffix|cidr, port}."""
    if not isinstance(rule, str) or not rule.strip():
        raise _fail(policy, f"rule {rule!r} is not a non-empty string.")
    text = rule.strip().lower()
    match = CIDR_RULE.fullmatch(text)
    if match:
        raw = match["v6"] or match["v4"]
        try:
            cidr = ipaddress.ip_network(raw, strict=False)
        except ValueError as exc:
            raise _fail(policy, f"rule {rule!r}: {raw!r} is not an address or network.") from exc
        if match["v6"] and cidr.version != 6:
            raise _fail(policy, f"rule {rule!r}: write IPv4 networks without brackets.")
        return {"cidr": str(cidr), "port": _port(policy, rule, match["port"], None)}
    match = HOST_RULE.fullmatch(text)
    if not match or "/" in text:
        raise _fail(
            policy,
            f"rule {rule!r} is neither HOST[:PORT], *.DOMAIN[:PORT], A.B.C.D/N:PORT nor "
            "[IPV6/N]:PORT.",
        )
    host = match["host"].rstrip(".")
    if _is_ip(host):
        raise _fail(
            policy,
            f"rule {rule!r} names an address: write it as {host}/32:PORT (an address rule).",
        )
    wildcard = host.startswith("*.")
    labels = (host[2:] if wildcard else host).split(".")
    if len(host) > 253 or not all(LABEL.fullmatch(label) for label in labels):
        raise _fail(policy, f"rule {rule!r}: {host!r} is not a valid host name.")
    port = _port(policy, rule, match["port"], 443)
    return {"suffix": host[1:], "port": port} if wildcard else {"host": host, "port": port}


def egress_policies(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each policy validated, with its normalized rules (see DOCUMENTATION)."""
    seen: set[str] = set()
    out = []
    for item in policies or []:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise AnsibleFilterError(
                f"egress_policies: {name!r} is not a valid policy name: use 1-12 lower-case "
                "letters, digits or '-', starting with a letter or digit."
            )
        if name in seen:
            raise _fail(name, "the name is used twice: give each policy its own name.")
        seen.add(name)
        if "subnet" in item or "subnet6" in item:
            raise _fail(
                name,
                "a policy no longer has a subnet: each tenant on it gets a network of its own "
                "from egress_subnet_pool and egress_subnet6_pool; remove subnet and subnet6.",
            )
        allow = item.get("allow")
        if not isinstance(allow, list):
            raise _fail(name, "allow must be a list of rules (an empty list allows nothing).")
        rules: list[dict[str, Any]] = []
        for rule in allow:
            parsed = parse_rule(name, rule)
            if parsed not in rules:
                rules.append(parsed)
        out.append({"name": name, "allow": allow, "rules": rules})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"egress_policies": egress_policies}
