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

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fortress_lab import adversary as adv
from fortress_lab import egress
from fortress_lab.common import contract

HOST = "fortress-pytest-sandbox-1"  # tests/conftest.py: sandbox_lab


@pytest.fixture(scope="module")
def world(sandbox_lab: Path) -> Iterator[adv.LabHost]:
    with egress.world(adv.LabHost(HOST)) as host:
        yield host


@pytest.fixture(scope="module")
def outcome(world: adv.LabHost) -> egress.Outcome:
    """Every check in one sandbox, and how many requests each world server got meanwhile."""
    return egress.observe(world)


@pytest.mark.parametrize("name", list(egress.EXPECT))
def test_egress_check(outcome: egress.Outcome, name: str) -> None:
    """Each request gets exactly what the policy says: the allowed API's real answer, the
    proxy's 403, or nothing at all (blocked below the proxy)."""
    assert not outcome.wrong([name]), f"{outcome.wrong([name])}\n{outcome.raw[-3000:]}"


def test_the_world_answers_when_asked_directly(world: adv.LabHost) -> None:
    """The control: from the host itself, outside the policy, the forbidden host, the
    metadata service and the host's service all answer; so "nothing answered" in a sandbox
    is the policy's doing, not a dead server."""
    seen = egress.control(world)
    assert seen == {
        "api": "world:api", "metadata": "world:metadata", "forbidden": "world:forbidden",
        "host_service": "world:host-service", "host_service6": "world:host-service6",
    }, seen  # fmt: skip


def test_refused_requests_never_reached_the_world(outcome: egress.Outcome) -> None:
    """The world's own logs: no request from the sandbox arrived at a server or resolver
    it must not reach; the allowed ones did."""
    assert not outcome.unexpected_hits(), outcome.delta


def test_the_sandbox_ran_under_runsc_in_host_network_mode(outcome: egress.Outcome) -> None:
    """The library picked the outer's egress runtime for the policy: runsc, host network
    mode; and handed the sandbox the policy's proxy."""
    runtime, args = outcome.runtime.partition(" ")[::2]
    print(f"egress sandbox runtime: {runtime} {args}")
    assert runtime == "runsc-egress" and "--network=host" in args.split(), outcome.runtime
    gw4, port = egress.gateways(adv.LabHost(HOST))[::2]
    assert outcome.env_proxy == f"http://{gw4}:{port}", outcome.env_proxy


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


def test_the_proxy_counts_its_decisions_in_a_file(
    outcome: egress.Outcome, world: adv.LabHost
) -> None:
    """Every check the proxy refused and every one it allowed is in its counters file (the
    proxy of the outer's own network on the policy: one per tenant and policy)."""
    ident = f"{egress.POLICY}.{world.outer}"
    counts = json.loads(world.sh(f"cat /run/fortress-egress/{ident}/counters.json"))
    denied = [c for c in egress.CHECKS if c.expect == "denied"]
    assert (counts["policy"], counts["tenant"]) == (egress.POLICY, world.outer), counts
    assert counts["deny"] >= len(denied) and counts["allow"] >= len(egress.REACHED), counts
    assert sum(counts["status"].values()) == counts["deny"], counts


# A direct connection to the world's private server (10.99.0.10:80), as the user it runs as.
DIRECT = (
    'python3 -c \'import socket; s = socket.create_connection(("10.99.0.10", 80), timeout=3); '
    's.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); print(s.makefile("rb").read().decode())\' 2>&1'
)


def test_the_proxys_user_reaches_no_private_address_but_root_does(world: adv.LabHost) -> None:
    """nftables holds the proxy's user to the public Internet too (if the proxy's own check
    failed): the world's private server answers root on the same host (the control), never
    the proxy's user."""
    assert "world:private" in world.sh(DIRECT)
    out = world.sh(AS_PROXY + DIRECT)
    assert "world:private" not in out and "timed out" in out, out


# One DNS query (UDP) to ADDRESS:53: "ANSWERED" or "NONE" within 2 s.
QUERY = (
    "python3 -c 'import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    's.settimeout(2); q = bytes.fromhex("12340100000100000000000004746573740000010001"); '
    "s.sendto(q, (sys.argv[1], 53)); "
    'print("ANSWERED" if s.recv(512)[:2] == q[:2] else "NONE")\' {address} 2>&1 | tail -1'
)
AS_PROXY = "setpriv --reuid=fortress-egress --regid=fortress-egress --clear-groups "


def test_the_proxys_user_reaches_dns_only_at_the_hosts_resolvers(world: adv.LabHost) -> None:
    """DNS (port 53) is the proxy user's way to the host's resolvers (resolv.conf), not to
    any resolver on a non-public or host address: the world's private 10.99.0.10 and the
    host's own 127.0.0.1 answer root (the control), never the proxy's user. The table names
    the host's resolvers."""
    for address in ("10.99.0.10", "127.0.0.1"):
        assert world.sh(QUERY.format(address=address)) == "ANSWERED", address
        got = world.sh(AS_PROXY + QUERY.format(address=address))
        assert got != "ANSWERED", (address, got)
    resolvers = [
        line.split()[1] for line in world.sh("cat /etc/resolv.conf").splitlines()
        if line.startswith("nameserver")
    ]  # fmt: skip
    table = world.sh(f"nft list table {egress.TABLE}")
    dns = [line for line in table.splitlines() if "dport 53 accept" in line]
    assert resolvers and all(any(r in line for line in dns) for r in resolvers), dns


# Root in an outer container on NETWORK (an egress network of the lab host's daemon) trying
# the host's service (the world's, port 18081) at the network's gateway and at every address
# of the host.
STALE_PROBE = (
    'for a in {addrs}; do timeout 3 bash -c "echo > /dev/tcp/$a/18081" 2>/dev/null '
    "&& echo REACHED $a; done; echo DONE"
)


def test_a_network_no_tenant_has_any_more_reaches_nothing_on_the_host(
    world: adv.LabHost,
) -> None:
    """An egress network the role no longer wants (the shared network of the layout before
    a network per tenant, a tenant moved to another policy, an item removed while its outer
    still runs) stays while a container is on it, and has no proxy. Root in an outer on it
    reaches nothing on the host. Red control: the same network with a bridge the role would
    not name reaches the host's service."""
    image = world.sh("docker inspect -f '{{.Config.Image}}' fortress-outer-default")
    addrs = world.sh("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1").split()
    names = contract()
    labels = f"--label {names.EGRESS_POLICY_LABEL}=lab --label {names.EGRESS_TENANT_LABEL}=gone"
    stale = names.EGRESS_NETWORK_PREFIX + "lab.gone"
    cases = {
        "stale": (stale, names.EGRESS_BRIDGE_PREFIX + "5ta1e00000", "10.213.250"),
        "control": ("fortress-control-test", "ctl-5ta1e0000", "10.213.251"),
    }
    got = {}
    for case, (name, bridge, net) in cases.items():
        world.sh(
            f"docker network create --internal --subnet {net}.0/28 --gateway {net}.1 "
            f"-o com.docker.network.bridge.name={bridge} {labels} {name}"
        )
        try:
            probe = STALE_PROBE.format(addrs=" ".join([f"{net}.1", *addrs]))
            got[case] = world.sh(
                f"docker run --rm --network {name} --entrypoint bash {image} -c '{probe}'"
            )
        finally:
            world.sh(f"docker network rm {name}")
    assert "REACHED" in got["control"], got  # the probe finds a way where there is one
    assert "DONE" in got["stale"] and "REACHED" not in got["stale"], got


# Root in the outer connecting to its own proxy from an address that is not its own (the
# kernel sends the SYN with that source); the host's answer, if any, goes to that address.
SPOOF = (
    "ip addr add {spoofed}/32 dev eth0; "
    'perl -MIO::Socket::INET -e \'IO::Socket::INET->new(PeerAddr => "{gw}", '
    'PeerPort => {port}, LocalAddr => "{spoofed}", Timeout => 3)\'; '
    "ip addr del {spoofed}/32 dev eth0; echo DONE"
)
# A counter of what the lab host sends to the spoofed address (a table of the test's own).
WATCH = (
    "nft add table inet fortress_probe && nft add chain inet fortress_probe out "
    "'{{ type filter hook output priority 0; policy accept; }}' && "
    "nft add rule inet fortress_probe out ip daddr {spoofed} counter"
)
UDP = 'python3 -c \'import socket; socket.socket(2, 2).sendto(b"x", ("{spoofed}", 9))\''


def test_a_spoofed_source_gets_no_answer_from_the_host(world: adv.LabHost) -> None:
    """Root in the outer (NET_ADMIN in its own namespace) sends its proxy a SYN from an
    address that is not the outer's: an answer would leave the host for that address (any
    address the host routes to: a covert channel past the allowlist, or packets into another
    tenant's network). The host sends nothing there. Red control: a datagram the host itself
    sends to that address is counted."""
    gw4, _gw6, port = egress.gateways(world)
    spoofed = "198.51.100.99"
    watching = world.sh(WATCH.format(spoofed=spoofed))
    try:
        assert watching == "", watching
        got = world.outer_exec(["bash", "-c", SPOOF.format(spoofed=spoofed, gw=gw4, port=port)])
        after_spoof = world.sh("nft list table inet fortress_probe")
        world.sh(UDP.format(spoofed=spoofed))
        after_control = world.sh("nft list table inet fortress_probe")
    finally:
        world.sh("nft delete table inet fortress_probe")
    assert "DONE" in got, got
    assert "counter packets 0 bytes 0" not in after_control, after_control  # it counts
    assert "counter packets 0 bytes 0" in after_spoof, after_spoof  # the host answered


def test_a_claimed_address_leaves_no_neighbour_entry_on_the_host(world: adv.LabHost) -> None:
    """Root in the outer asks the host for its gateway from addresses that are not its own
    network's (documentation ranges, the next tenant's /28 of the pool, its own /64 outside
    the addresses Docker gives out). Each one the host accepted would be an entry in the
    kernel's neighbour table, which every tenant and the host share (1024 entries by
    default): a flood of them denies everyone their neighbours. The host keeps none. Red
    control: an address of the outer's own range, unused, gets its entry."""
    got = egress.neighbour_claims(world)
    assert got.ran, got.output
    assert set(got.control) <= got.entries, got  # a claim the host takes is seen
    assert not got.entries & set(got.claimed), got


def test_without_the_firewall_the_host_is_reachable_and_the_role_restores_it(
    world: adv.LabHost,
) -> None:
    """The control for the nftables table: with it deleted, the same sandbox reaches the
    host's service (IPv4 and IPv6) and its resolver (also through the outer's own DNS);
    the firewall unit (as at boot) then loads the very same table again, the one every
    other check ran under."""
    opened = egress.without_firewall(world)
    got = {n: opened.verdicts.get(n) for n in egress.OPENED_WITHOUT_FIREWALL}
    assert got == egress.OPENED_WITHOUT_FIREWALL, opened.raw[-2000:]


def test_the_rules_hold_after_dockerd_and_the_outer_restart(world: adv.LabHost) -> None:
    """Restart the host's dockerd, then the outer container: the table is still loaded
    (Docker never touches it) and every check gives the same answer."""
    table = world.sh(f"nft -s list table {egress.TABLE}")
    world.sh("systemctl restart docker.service")
    world.wait_outer()
    world.restart_outer()
    assert world.sh(f"nft -s list table {egress.TABLE}") == table
    result = egress.observe(world)
    assert not result.wrong() and not result.unexpected_hits(), result.raw[-3000:]
