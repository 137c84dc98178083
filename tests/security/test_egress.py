"""Egress control on a container lab host (docs/threat-model.md, exfiltration).

The shared lab host is converged with the lab's egress policy `lab` (inventories/lab
group_vars): its outer container sits on the policy's internal network, whose only way out
is the policy's proxy. The test world (fortress_lab.egress) is built on the lab host: an
allowed API, a forbidden host, a fake metadata service, IPv6 servers, a DNS resolver and a
service on the host's own addresses, all answering real HTTP (or DNS) when asked directly.
One sandbox on the policy, made by the library like any agent's, runs every request at once.

Network mode: the sandboxes here run under the outer's egress runtime, runsc with
`--network=host` (socket calls go to the outer's network namespace, i.e. the policy's
network); test_the_sandbox_ran_under_runsc_in_host_network_mode records it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fortress_lab import adversary as adv
from fortress_lab import egress

HOST = "fortress-pytest-sandbox-1"  # tests/conftest.py: sandbox_lab
EXPECT = {c.name: c.expect for c in egress.CHECKS} | {name: "none" for name in egress.DNS_CHECKS}
WHAT = {c.name: c.what for c in egress.CHECKS} | {
    name: f"a DNS query ({server or 'the resolver in resolv.conf'})"
    for name, server in egress.DNS_CHECKS.items()
}
# World servers a sandbox must never reach, whatever it asks.
NEVER = ("forbidden", "metadata", "host-service", "host-service6", "cidr-other-port",
         "resolver-remote", "resolver6-remote", "resolver-host", "resolver6-host")  # fmt: skip
REACHED = ("api", "api6", "cidr", "cidr6")


@pytest.fixture(scope="module")
def world(sandbox_lab: Path) -> Iterator[adv.LabHost]:
    host = adv.LabHost(HOST)
    egress.world_up(host)
    try:
        yield host
    finally:
        egress.world_down(host)


@pytest.fixture(scope="module")
def outcome(world: adv.LabHost) -> tuple[egress.Outcome, dict[str, int]]:
    """Every check in one sandbox, and how many requests each world server got meanwhile."""
    before = egress.hits(world)
    result = egress.check(world)
    after = egress.hits(world)
    return result, {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


def assert_as_expected(result: egress.Outcome, names: list[str] | None = None) -> None:
    wrong = {
        n: f"{WHAT[n]}: expected {EXPECT[n]}, got {result.verdicts.get(n, 'no output')}"
        for n in names or EXPECT
        if result.verdicts.get(n) != EXPECT[n]
    }
    assert not wrong, f"{wrong}\n{result.raw[-3000:]}"


@pytest.mark.parametrize("name", list(EXPECT))
def test_egress_check(outcome: tuple[egress.Outcome, dict[str, int]], name: str) -> None:
    """Each request gets exactly what the policy says: the allowed API's real answer, the
    proxy's 403, or nothing at all (blocked below the proxy)."""
    assert_as_expected(outcome[0], [name])


def test_the_world_answers_when_asked_directly(world: adv.LabHost) -> None:
    """The control: from the host itself, outside the policy, the forbidden host, the
    metadata service and the host's service all answer; so "nothing answered" in a sandbox
    is the policy's doing, not a dead server."""
    seen = egress.control(world)
    assert seen == {
        "api": "world:api", "metadata": "world:metadata", "forbidden": "world:forbidden",
        "host_service": "world:host-service", "host_service6": "world:host-service6",
    }, seen  # fmt: skip


def test_refused_requests_never_reached_the_world(
    outcome: tuple[egress.Outcome, dict[str, int]],
) -> None:
    """The world's own logs: no request from the sandbox arrived at a server or resolver
    it must not reach; the allowed ones did."""
    delta = outcome[1]
    assert {n: delta.get(n, 0) for n in NEVER} == dict.fromkeys(NEVER, 0), delta
    assert all(delta.get(n, 0) >= 1 for n in REACHED), delta


def test_the_sandbox_ran_under_runsc_in_host_network_mode(
    outcome: tuple[egress.Outcome, dict[str, int]],
) -> None:
    """The library picked the outer's egress runtime for the policy: runsc, host network
    mode; and handed the sandbox the policy's proxy."""
    result = outcome[0]
    runtime, args = result.runtime.partition(" ")[::2]
    print(f"egress sandbox runtime: {runtime} {args}")
    assert runtime == "runsc-egress" and "--network=host" in args.split(), result.runtime
    gw4, port = egress.gateways(adv.LabHost(HOST))[::2]
    assert result.env_proxy == f"http://{gw4}:{port}", result.env_proxy


def test_a_policy_the_outer_is_not_on_is_refused(world: adv.LabHost) -> None:
    """network: a policy this outer does not carry is one sentence, and no sandbox."""
    lib = adv.load_library()
    boxes = world.sandboxes()
    before = boxes.list()
    refusal = (
        r"egress policy 'other' is not available on this daemon "
        r"\(its outer container has policy 'lab'\)"
    )
    with pytest.raises(lib.SandboxError, match=refusal):
        boxes.create(lib.SandboxSpec(image=adv.IMAGE, network="other", owner="egress"))
    assert boxes.list() == before


def test_without_the_firewall_the_host_is_reachable_and_the_role_restores_it(
    world: adv.LabHost,
) -> None:
    """The control for the nftables table: with it deleted, the same sandbox reaches the
    host's service (IPv4 and IPv6) and its resolver (also through the outer's own DNS); with
    the firewall unit started again (as at boot), all of it is blocked again."""
    world.sh("nft delete table inet fortress_egress")
    try:
        opened = egress.check(world)
    finally:
        world.sh("systemctl restart fortress-egress-firewall.service")
    got = {n: opened.verdicts.get(n) for n in ("host_service", "host_service6", "dns_gateway",
                                                "dns_default")}  # fmt: skip
    assert got == {
        "host_service": "world:host-service", "host_service6": "world:host-service6",
        "dns_gateway": "answered", "dns_default": "answered",
    }, opened.raw[-2000:]  # fmt: skip
    assert_as_expected(egress.check(world))


def test_the_rules_hold_after_dockerd_and_the_outer_restart(world: adv.LabHost) -> None:
    """Restart the host's dockerd, then the outer container: the table is still loaded
    (Docker never touches it) and every check gives the same answer."""
    table = world.sh("nft -s list table inet fortress_egress")
    world.sh("systemctl restart docker.service")
    world.wait_outer()
    world.restart_outer()
    assert world.sh("nft -s list table inet fortress_egress") == table
    assert_as_expected(egress.check(world))
