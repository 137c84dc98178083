"""Egress control on a VM lab host (Debian 12, kernel 6.1, its own netfilter), on QEMU's
restricted network: the world is inside the VM, no check aims beyond it, and nothing could
leave it anyway. The VM's own lookups go to QEMU's DNS, never to the world's resolver on
127.0.0.1 (they did before the lab named it: systemd-timesyncd's NTP pool lookups were
counted as the sandbox's). The same world and checks as
tests/security/test_egress.py (fortress_lab.egress), built inside the VM. The VM converged
the policy `lab` (molecule/vm/group_vars); its outer container sits on the policy's internal
network.

Network mode: the egress sandbox runs under runsc with `--network=host` (the outer's egress
runtime), while the VM's default runtime keeps gVisor's own stack (`--network=sandbox`);
test_the_sandbox_ran_under_runsc_in_host_network_mode records it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fortress_lab import adversary as adv
from fortress_lab import egress


@pytest.fixture(scope="module")
def vm(host) -> Iterator[adv.RemoteHost]:
    with egress.world(adv.RemoteHost(host)) as remote:
        yield remote


@pytest.fixture(scope="module")
def outcome(vm: adv.RemoteHost) -> egress.Outcome:
    result = egress.observe(vm)
    print(result.raw)
    return result


@pytest.mark.parametrize("name", list(egress.EXPECT))
def test_egress_check(outcome: egress.Outcome, name: str) -> None:
    assert not outcome.wrong([name]), outcome.wrong([name])


def test_the_world_answers_when_asked_directly(vm: adv.RemoteHost) -> None:
    assert egress.control(vm) == {
        "api": "world:api", "metadata": "world:metadata", "forbidden": "world:forbidden",
        "host_service": "world:host-service", "host_service6": "world:host-service6",
    }  # fmt: skip


def test_refused_requests_never_reached_the_world(outcome: egress.Outcome) -> None:
    assert not outcome.unexpected_hits(), outcome.delta


def test_the_sandbox_ran_under_runsc_in_host_network_mode(outcome: egress.Outcome) -> None:
    runtime, args = outcome.runtime.partition(" ")[::2]
    print(f"egress sandbox runtime on the VM: {runtime} {args}")
    assert runtime == "runsc-egress" and "--network=host" in args.split(), outcome.runtime


def test_a_claimed_address_leaves_no_neighbour_entry_on_the_host(vm: adv.RemoteHost) -> None:
    """As tests/security/test_egress.py's, under the VM's own kernel and sysctls (systemd's
    reverse-path filter among them): root in the outer claims addresses that are not its
    network's; the host keeps no neighbour entry for any, and one for the control."""
    got = egress.neighbour_claims(vm)
    assert got.ran, got.output
    assert set(got.control) <= got.entries, got
    assert not got.entries & set(got.claimed), got


def test_without_the_firewall_the_host_is_reachable_and_the_unit_restores_it(
    vm: adv.RemoteHost,
) -> None:
    """The control for the nftables table on a real kernel: deleted, the sandbox reaches
    the host's service and resolver; its unit then loads the same table again."""
    opened = egress.without_firewall(vm)
    got = {n: opened.verdicts.get(n) for n in egress.OPENED_WITHOUT_FIREWALL}
    assert got == egress.OPENED_WITHOUT_FIREWALL, opened.raw
