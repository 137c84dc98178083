"""Egress control on a VM lab host (Debian 12, kernel 6.1, its own netfilter), on QEMU's
restricted user network: the same world and checks as tests/security/test_egress.py
(fortress_lab.egress), built inside the VM. The VM converged the policy `lab`
(molecule/vm/group_vars); its outer container sits on the policy's internal network.

Network mode: the egress sandbox runs under runsc with `--network=host` (the outer's egress
runtime), while the VM's default runtime keeps gVisor's own stack (`--network=sandbox`);
test_the_sandbox_ran_under_runsc_in_host_network_mode records it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fortress_lab import adversary as adv
from fortress_lab import egress

EXPECT = {c.name: c.expect for c in egress.CHECKS} | {name: "none" for name in egress.DNS_CHECKS}
NEVER = ("forbidden", "metadata", "host-service", "host-service6", "cidr-other-port",
         "resolver-remote", "resolver6-remote", "resolver-host", "resolver6-host")  # fmt: skip


@pytest.fixture(scope="module")
def vm(host) -> Iterator[adv.RemoteHost]:
    remote = adv.RemoteHost(host)
    egress.world_up(remote)
    try:
        yield remote
    finally:
        egress.world_down(remote)


@pytest.fixture(scope="module")
def outcome(vm: adv.RemoteHost) -> tuple[egress.Outcome, dict[str, int]]:
    before = egress.hits(vm)
    result = egress.check(vm)
    after = egress.hits(vm)
    print(result.raw)
    return result, {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


@pytest.mark.parametrize("name", list(EXPECT))
def test_egress_check(outcome, name: str) -> None:
    got = outcome[0].verdicts.get(name)
    assert got == EXPECT[name], f"{name}: expected {EXPECT[name]}, got {got}\n{outcome[0].raw}"


def test_the_world_answers_when_asked_directly(vm: adv.RemoteHost) -> None:
    assert egress.control(vm) == {
        "api": "world:api", "metadata": "world:metadata", "forbidden": "world:forbidden",
        "host_service": "world:host-service", "host_service6": "world:host-service6",
    }  # fmt: skip


def test_refused_requests_never_reached_the_world(outcome) -> None:
    delta = outcome[1]
    assert {n: delta.get(n, 0) for n in NEVER} == dict.fromkeys(NEVER, 0), delta
    assert all(delta.get(n, 0) >= 1 for n in ("api", "api6", "cidr", "cidr6")), delta


def test_the_sandbox_ran_under_runsc_in_host_network_mode(outcome) -> None:
    runtime, args = outcome[0].runtime.partition(" ")[::2]
    print(f"egress sandbox runtime on the VM: {runtime} {args}")
    assert runtime == "runsc-egress" and "--network=host" in args.split(), outcome[0].runtime


def test_without_the_firewall_the_host_is_reachable_and_the_unit_restores_it(
    vm: adv.RemoteHost,
) -> None:
    """The control for the nftables table on a real kernel: deleted, the sandbox reaches
    the host's service and resolver; loaded again by its unit, they are blocked."""
    vm.sh("nft delete table inet fortress_egress")
    try:
        opened = egress.check(vm)
    finally:
        vm.sh("systemctl restart fortress-egress-firewall.service")
    got = {n: opened.verdicts.get(n) for n in ("host_service", "host_service6", "dns_gateway")}
    assert got == {
        "host_service": "world:host-service", "host_service6": "world:host-service6",
        "dns_gateway": "answered",
    }, opened.raw  # fmt: skip
    closed = egress.check(vm)
    assert {n: closed.verdicts.get(n) for n in got} == dict.fromkeys(got, "none"), closed.raw
