"""Filter: the egress role's networks, one per tenant and policy, with stable subnets."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.contract import (
    EGRESS_BRIDGE_PREFIX,
    EGRESS_NETWORK_PREFIX,
)

DOCUMENTATION = r"""
name: egress_networks
short_description: One egress network and proxy per tenant and policy
description:
  - For each tenant of O(tenants) that names a policy (C(egress)), the network the egress role
    makes for that tenant on that policy, with the bridge, subnets, gateways, proxy URL and
    the policy's rules. Tenants never share a network (no L2 segment, no embedded DNS that
    names another tenant's containers) nor a proxy process.
  - "Subnets: a /28 of O(pool4) and a /64 of O(pool6) each. A network that already exists
    (O(existing)) keeps its subnets; a new one gets the first that overlaps no existing egress
    network, so adding or removing a tenant never moves another's. The pools bound the
    networks per host: 4096 with the default /16 (and 65536 /64s in the default /48)."
  - "Addresses: Docker gives a network's containers IPv6 addresses only from C(range6), the
    first /124 of its /64, as the /28 bounds IPv4: the egress role lets the host hear a
    network (its proxy, ARP and neighbour discovery) only from those 16 addresses of each
    family, so no tenant fills the host's neighbour table, which every tenant shares."
  - Fails with one sentence when a tenant names a policy O(_input) does not define, a tenant
    is listed twice, a pool is not a private network of its family or has no subnet left, a
    pool overlaps a route of the host's (O(routes)), or a network the host has lies outside
    its pool (it would have to move).
positional: tenants, pool4, pool6, port, existing, routes
options:
  _input:
    description: The validated policies (C(egress_policies | fortress.agents.egress_policies)).
    type: list
    elements: dict
    required: true
  tenants:
    description:
      - The tenants (C(egress_tenants)), each with C(name) and C(egress) (a policy's name, or
        null for none, and then no network here).
    type: list
    elements: dict
    required: true
  pool4:
    description: IPv4 pool the /28 subnets are taken from (C(egress_subnet_pool)).
    type: str
    required: true
  pool6:
    description: IPv6 pool the /64 subnets are taken from (C(egress_subnet6_pool)).
    type: str
    required: true
  port:
    description: The port each proxy listens on (C(egress_proxy_port)).
    type: int
    required: true
  existing:
    description:
      - The egress networks on the host's daemon, as Docker lists them (C(Name), C(IPAM));
        empty on a host never converged.
    type: list
    elements: dict
    default: []
  routes:
    description:
      - The host's routes, as C(ip -j route show table main) lists them (IPv4 and IPv6). A pool
        may overlap none but those on the role's own bridges (C(fe-*)) and default routes, since
        a tenant's network inside the host's LAN, VPN or another Docker network would take
        its addresses from the host (the host would send their traffic to the tenant).
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: The networks of two tenants on one policy
  ansible.builtin.debug:
    msg: >-
      {{ [{'name': 'llm', 'allow': ['api.openai.com']}] | fortress.agents.egress_policies
         | fortress.agents.egress_networks([{'name': 'tenant-a', 'egress': 'llm'},
                                            {'name': 'tenant-b', 'egress': 'llm'}],
                                           '10.213.0.0/16', 'fd0f:e9e5:213::/48', 3128) }}
"""

RETURN = r"""
_value:
  description:
    - Each network with C(id) (POLICY.TENANT, which names its proxy's unit and configuration),
      C(policy), C(tenant), C(network) (the contract's network prefix, then the id),
      C(bridge), C(subnet), C(gateway), C(subnet6), C(range6) (the addresses given out in
      C(subnet6)), C(gateway6), C(port), C(proxy) (the proxy URL) and C(rules).
  type: list
  elements: dict
"""

TENANT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,40}$")
PREFIX4 = 28  # each network: a /28 of the IPv4 pool
PREFIX6 = 64  # and a /64 of the IPv6 pool
RANGE6 = 124  # of which Docker gives out the first 16 addresses, as many as the /28 has


def _fail(msg: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"egress_networks: {msg}")


# Where a pool may lie: private ranges (RFC 1918) and unique local IPv6 (RFC 4193), never
# loopback, link-local, the unspecified or a public block (a gateway there would be a proxy
# listening on loopback, or on someone's address).
PRIVATE = {
    4: [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")],
    6: [ipaddress.ip_network("fc00::/7")],
}


def _pool(text: str, version: int, prefix: int, var: str) -> ipaddress._BaseNetwork:
    try:
        pool = ipaddress.ip_network(str(text))
    except ValueError as exc:
        raise _fail(f"{var} {text!r} is not a network: write ADDRESS/LENGTH.") from exc
    if pool.version != version or pool.prefixlen > prefix:
        raise _fail(
            f"{var} {text!r} is not an IPv{version} network of /{prefix} or larger: each "
            f"tenant's network takes a /{prefix} of it."
        )
    if not any(pool.subnet_of(block) for block in PRIVATE[version]):
        where = "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16" if version == 4 else "fc00::/7"
        raise _fail(f"{var} {text!r} is not a private range: take it from {where}.")
    return pool


def _routed(pool: ipaddress._BaseNetwork, routes: list[dict[str, Any]], var: str) -> None:
    """Refuse a pool that overlaps a route of the host's that is not the role's own."""
    for route in routes or []:
        if not isinstance(route, dict) or route.get("dst") in (None, "default"):
            continue
        dev = str(route.get("dev") or route.get("type") or "?")
        if dev.startswith(EGRESS_BRIDGE_PREFIX):
            continue
        try:
            dst = ipaddress.ip_network(str(route["dst"]), strict=False)
        except ValueError:
            continue
        if dst.version == pool.version and dst.overlaps(pool) and not dst.is_link_local:
            raise _fail(
                f"{var} {str(pool)!r} overlaps the host's route to {dst} ({dev}): its tenants' "
                f"networks would take those addresses from the host; choose a private range the "
                f"host routes nowhere."
            )


def _existing(networks: list[dict[str, Any]]) -> dict[str, list[ipaddress._BaseNetwork]]:
    """Each existing network's subnets, by name (what Docker says, parsed and nothing else)."""
    out: dict[str, list[ipaddress._BaseNetwork]] = {}
    for net in networks or []:
        configs = ((net.get("IPAM") or {}).get("Config") or []) if isinstance(net, dict) else []
        subnets = []
        for config in configs:
            try:
                subnets.append(ipaddress.ip_network(str((config or {}).get("Subnet"))))
            except ValueError:
                continue
        out[str(net.get("Name"))] = subnets
    return out


def _free(pool: ipaddress._BaseNetwork, prefix: int, used: list) -> Iterator:
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(u) for u in used if u.version == candidate.version):
            yield candidate


def _subnet(name: str, pool, prefix: int, have: list, used: list, var: str):
    """The network's subnet of this family: the one it has (a network never moves: Docker
    would recreate it, cutting its outer off), else the first free one (added to used)."""
    kept = [s for s in have if s.version == pool.version]
    if kept:
        if kept[0].prefixlen != prefix or not kept[0].subnet_of(pool):
            raise _fail(
                f"network {name!r} has subnet {kept[0]}, which is not a /{prefix} of {var} "
                f"{str(pool)!r}: set the pool back, or remove the tenant's outer (state: "
                "absent) and converge so that the network goes, then change the pool."
            )
        return kept[0]
    subnet = next(_free(pool, prefix, used), None)
    if subnet is None:
        raise _fail(
            f"{var} {str(pool)!r} has no /{prefix} left for network {name!r}: give a larger pool."
        )
    used.append(subnet)
    return subnet


def egress_networks(
    policies: list[dict[str, Any]],
    tenants: list[dict[str, Any]],
    pool4: str,
    pool6: str,
    port: int,
    existing: list[dict[str, Any]] | None = None,
    routes: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One network per tenant and policy (see DOCUMENTATION)."""
    by_name = {p["name"]: p for p in policies or []}
    v4 = _pool(pool4, 4, PREFIX4, "egress_subnet_pool")
    v6 = _pool(pool6, 6, PREFIX6, "egress_subnet6_pool")
    _routed(v4, routes or [], "egress_subnet_pool")
    _routed(v6, routes or [], "egress_subnet6_pool")
    have = _existing(existing or [])
    used = [s for subnets in have.values() for s in subnets]
    wanted: list[tuple[dict[str, Any], str]] = []
    seen: set[str] = set()
    for item in tenants or []:
        if not isinstance(item, dict) or not item.get("egress"):
            continue
        tenant, policy = item.get("name"), item["egress"]
        if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
            raise _fail(
                f"tenant {tenant!r} is not a valid tenant name: use 1-41 lower-case letters, "
                "digits, '.', '_' or '-' (an outer instance's name)."
            )
        if policy not in by_name:
            raise _fail(
                f"tenant {tenant!r} names egress policy {policy!r}, which egress_policies does "
                f"not define: add the policy, or change the tenant's egress."
            )
        if tenant in seen:
            raise _fail(f"tenant {tenant!r} is listed twice: give each tenant one item.")
        seen.add(tenant)
        wanted.append((by_name[policy], tenant))
    out, bridges = [], set()
    for policy, tenant in wanted:
        ident = f"{policy['name']}.{tenant}"
        network = EGRESS_NETWORK_PREFIX + ident
        subnet = _subnet(network, v4, PREFIX4, have.get(network, []), used, "egress_subnet_pool")
        subnet6 = _subnet(network, v6, PREFIX6, have.get(network, []), used, "egress_subnet6_pool")
        gateway, gateway6 = next(subnet.hosts()), next(subnet6.hosts())
        # A bridge name is at most 15 bytes: a digest of the network's name, checked unique.
        bridge = EGRESS_BRIDGE_PREFIX + hashlib.sha256(network.encode()).hexdigest()[:10]
        if bridge in bridges:  # pragma: no cover - 40 bits
            raise _fail(f"two networks hash to bridge {bridge}: rename tenant {tenant!r}.")
        bridges.add(bridge)
        out.append(
            {
                "id": ident,
                "policy": policy["name"],
                "tenant": tenant,
                "network": network,
                "bridge": bridge,
                "subnet": str(subnet),
                "gateway": str(gateway),
                "subnet6": str(subnet6),
                "range6": str(next(subnet6.subnets(new_prefix=RANGE6))),
                "gateway6": str(gateway6),
                "port": int(port),
                "proxy": f"http://{gateway}:{int(port)}",
                "rules": policy["rules"],
            }
        )
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"egress_networks": egress_networks}
