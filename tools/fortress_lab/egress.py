"""The egress tests: a world built on the lab host, and the requests a sandbox makes into it.

One implementation for container lab hosts (`adversary.LabHost`) and VM lab hosts
(`adversary.RemoteHost`). `world_up` builds, on the host itself and nowhere else:
- a network namespace, fortress-world, behind a veth pair (fw-world on the host side) with
  routes to its addresses: the stand-in for the internet, so that the proxy reaches it as
  it would a remote server;
- in it, HTTP servers that answer "world:NAME": api (198.51.100.10:80, the allowed API,
  named api.allowed.test), forbidden (198.51.100.20:80, forbidden.test), cidr
  (198.51.100.30:8080, allowed by an address rule), cidr-other-port (:8081, not allowed), a
  fake metadata service (169.254.169.254:80, also named meta.allowed.test, an allowed
  name), api6 (2001:db8:f0::10, api6.allowed.test) and cidr6 ([2001:db8:f0::30]:8080),
  and a DNS resolver on port 53 that answers every name with 198.51.100.99;
- on the host, a service on all of its addresses (the policy network's gateways included),
  port 18081, IPv4 and IPv6, and the same resolver: what a sandbox must not reach;
- the names in /etc/hosts, where the proxy (on the host) resolves them.
Every server logs each request it gets (`hits`): a refusal and a request that never arrived
are told apart. `check` runs CHECKS in one sandbox on the policy (through the library, like
the probes) and returns what each got: the HTTP status codes and the answering body.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fortress_lab.adversary import Shell, run_sandboxed
from fortress_lab.common import LabError, contract

WORLD = (Path(__file__).parent / "files" / "egress_world.py").read_text()
WORLD_DIR = "/run/fortress-egress-world"
INTERFACE = "fw-world"
NAMESPACE = "fortress-world"
LINK4, LINK6 = ("192.0.2.1/30", "192.0.2.2/30"), ("fd0f:e9e5:ffff::1/64", "fd0f:e9e5:ffff::2/64")
ADDRESSES = [
    "198.51.100.10/32", "198.51.100.20/32", "198.51.100.30/32", "169.254.169.254/32",
    "10.99.0.10/32", "2001:db8:f0::10/128", "2001:db8:f0::30/128",
]  # fmt: skip
NAMES = {
    "api.allowed.test": "198.51.100.10",
    "forbidden.test": "198.51.100.20",
    "meta.allowed.test": "169.254.169.254",
    "private.allowed.test": "10.99.0.10",
    "api6.allowed.test": "2001:db8:f0::10",
}
POLICY = "lab"  # inventories/lab/group_vars and molecule/vm: the policy the world is for


@dataclass(frozen=True)
class Check:
    name: str
    target: str  # "proxy", "proxy6", or host:port
    request: str  # sent as is (printf format: \r\n escapes, no %)
    expect: str  # the verdict that passes: a body ("world:api"), "denied" or "none"
    what: str

    def script(self) -> str:
        host, port = {
            "proxy": ("$GW4", "$PORT"), "proxy6": ("$GW6", "$PORT"),
        }.get(self.target, self.target.rsplit(":", 1))  # fmt: skip
        return f'probe {self.name} {host} {port} "{self.request}"'


def _get(url: str, host: str) -> str:
    return f"GET {url} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n"


def _connect(authority: str) -> str:
    return f"CONNECT {authority} HTTP/1.0\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n"


CHECKS = [
    Check("api", "proxy", _get("http://api.allowed.test/", "api.allowed.test"), "world:api",
          "an allowed name, through the proxy"),
    Check("api_over_ipv6", "proxy6", _get("http://api.allowed.test/", "api.allowed.test"),
          "world:api", "the same through the proxy's IPv6 address"),
    Check("api6", "proxy", _get("http://api6.allowed.test/", "api6.allowed.test"), "world:api6",
          "an allowed name with an IPv6 address (the proxy's IPv6 path out)"),
    Check("api_tunnel", "proxy", _connect("api.allowed.test:80"), "world:api",
          "a CONNECT tunnel to an allowed name and port"),
    Check("cidr", "proxy", _connect("198.51.100.30:8080"), "world:cidr",
          "an address an address rule allows (CONNECT)"),
    Check("cidr6", "proxy", _connect("[2001:db8:f0::30]:8080"), "world:cidr6",
          "an IPv6 address an address rule allows"),
    Check("forbidden", "proxy", _get("http://forbidden.test/", "forbidden.test"), "denied",
          "a name the policy does not list"),
    Check("api_wrong_port", "proxy", _connect("api.allowed.test:8081"), "denied",
          "an allowed name on a port its rule does not list"),
    Check("ip_literal", "proxy", _get("http://198.51.100.10/", "198.51.100.10"), "denied",
          "the allowed API's own address as an IP literal (a domain is required)"),
    Check("cidr_other_port", "proxy", _connect("198.51.100.30:8081"), "denied",
          "an allowed address on another port"),
    Check("metadata", "proxy", _get("http://169.254.169.254/", "169.254.169.254"), "denied",
          "the metadata address through the proxy"),
    Check("metadata_by_name", "proxy", _get("http://meta.allowed.test/", "meta.allowed.test"),
          "denied", "an allowed name that resolves to the metadata address"),
    Check("private_by_name", "proxy", _get("http://private.allowed.test/", "private.allowed.test"),
          "denied", "an allowed name that resolves to a private address (a LAN, a VPC)"),
    Check("host_via_proxy", "proxy", _connect("$GW4:18081"), "denied",
          "the host's own service through the proxy"),
    Check("direct_api", "198.51.100.10:80", _get("/", "api.allowed.test"), "none",
          "the allowed API without the proxy (direct-IP bypass)"),
    Check("direct_metadata", "169.254.169.254:80", _get("/", "169.254.169.254"), "none",
          "the metadata service without the proxy"),
    Check("host_service", "$GW4:18081", _get("/", "host"), "none",
          "a service on the host, at the network's IPv4 gateway"),
    Check("host_service6", "$GW6:18081", _get("/", "host"), "none",
          "a service on the host, at the network's IPv6 gateway"),
]  # fmt: skip

# DNS: nslookup against the resolver the sandbox was given (resolv.conf), the host's resolver
# at the gateway (IPv4, IPv6) and the world's address: each must get no answer.
DNS_CHECKS = {
    "dns_default": "",
    "dns_gateway": "$GW4",
    "dns_gateway6": "$GW6",
    "dns_world": "198.51.100.10",
    "dns_world6": "2001:db8:f0::10",
}

# What each check must get, and the world's servers a sandbox must never (or must) reach.
EXPECT = {c.name: c.expect for c in CHECKS} | dict.fromkeys(DNS_CHECKS, "none")
WHAT = {c.name: c.what for c in CHECKS} | {
    name: f"a DNS query ({server or 'the resolver in resolv.conf'})"
    for name, server in DNS_CHECKS.items()
}
NEVER = ("forbidden", "metadata", "private", "host-service", "host-service6", "cidr-other-port",
         "resolver-remote", "resolver6-remote", "resolver-host", "resolver6-host")  # fmt: skip
REACHED = ("api", "api6", "cidr", "cidr6")
# What deleting the nftables table opens (the firewall's control).
OPENED_WITHOUT_FIREWALL = {
    "host_service": "world:host-service", "host_service6": "world:host-service6",
    "dns_gateway": "answered", "dns_default": "answered",
}  # fmt: skip
TABLE = "inet fortress_egress"

# The sandbox side stays small (two processes per check: under a VM's software emulation
# each process costs); the answers are read here.
SCRIPT_HEAD = r"""
probe() { printf "$4" | timeout 6 nc -w 4 "$2" "$3" > "/tmp/out/$1" 2>&1; }
lookup() { timeout 5 nslookup leak.allowed.test $2 > "/tmp/out/$1" 2>&1; }
mkdir /tmp/out
echo "env HTTP_PROXY=${HTTP_PROXY:-unset}"
"""
STATUS = re.compile(r"^HTTP/1\.[01] ([0-9]{3})", re.MULTILINE)


def script() -> str:
    lines = [SCRIPT_HEAD]
    lines += [f"{c.script()} &" for c in CHECKS]
    lines += [f"lookup {name} {server} &" for name, server in DNS_CHECKS.items()]
    lines += ["wait", 'for f in /tmp/out/*; do echo "=== check ${f##*/}"; cat "$f"; done']
    return "\n".join(lines) + "\n"


def verdict(name: str, output: str) -> str:
    """What a check got: the world's answer ("world:NAME"), "denied" (the proxy's 403),
    "answered" (a DNS answer), or "none" (nothing answered)."""
    if name in DNS_CHECKS:
        return "answered" if "198.51.100.99" in output else "none"
    codes = STATUS.findall(output)
    bodies = [ln for ln in output.splitlines() if ln.startswith(("world:", "fortress egress"))]
    body = bodies[-1].strip() if bodies else ""
    if body.startswith("world:"):
        return body
    if "403" in codes and body.startswith("fortress egress"):
        return "denied"
    return "none" if not codes else f"other:{','.join(codes)}:{body}"


@dataclass
class Outcome:
    verdicts: dict[str, str]
    runtime: str
    env_proxy: str
    raw: str
    delta: dict[str, int] | None = None  # requests each world server got meanwhile

    def wrong(self, names: list[str] | None = None) -> dict[str, str]:
        """The checks that did not get what EXPECT says, each with a sentence."""
        return {
            n: f"{WHAT[n]}: expected {EXPECT[n]}, got {self.verdicts.get(n, 'no output')}"
            for n in names or EXPECT
            if self.verdicts.get(n) != EXPECT[n]
        }

    def unexpected_hits(self) -> dict[str, int]:
        """World servers the sandbox reached that it must not, and allowed ones it missed."""
        delta = self.delta or {}
        bad = {n: delta[n] for n in NEVER if delta.get(n)}
        return bad | {n: 0 for n in REACHED if not delta.get(n)}


def gateways(host: Shell, policy: str = POLICY) -> tuple[str, str, int]:
    """The IPv4 and IPv6 gateways and the proxy port of the network the egress role made for
    the host's outer (its tenant) on the policy, from its IPAM configuration and proxy label
    on the host's daemon."""
    name = f"{contract().EGRESS_NETWORK_PREFIX}{policy}.{host.outer}"
    out = host.run(f"docker network inspect {name}").stdout
    try:
        net = json.loads(out)[0]
    except (ValueError, IndexError) as exc:
        raise LabError(f"no egress network {name} on the host: {out[:200]}") from exc
    gws = [c["Gateway"] for c in net["IPAM"]["Config"] if c.get("Gateway")]
    gw4 = next(g for g in gws if ipaddress.ip_address(g).version == 4)
    gw6 = next(g for g in gws if ipaddress.ip_address(g).version == 6)
    return gw4, gw6, int(net["Labels"][contract().EGRESS_PROXY_LABEL].rsplit(":", 1)[1])


# Root in the outer claims addresses that are not its own, and from each one (1) asks the host
# for its gateway, its neighbour cache flushed: an ARP request (IPv4) or a neighbour
# solicitation (IPv6) whose sender is the claimed address; (2) with the gateway's entry pinned,
# sends a datagram through the gateway to an address beyond it with a TTL (hop limit) of 1:
# the host's answer, an ICMP error (time exceeded, no route), goes to the claimed address,
# which the host must then look up as a neighbour; (3) sends the gateway the first fragment of
# a datagram whose other fragments a classic BPF filter on its interface drops (helper-13): a
# reassembly the host begins times out with an ICMP error to the claimed address; (4) from an
# unused address of its own range, through a raw ICMPv6 socket in a user and network
# namespace of its own on a macvlan of its interface (the outer has no NET_RAW, but may make
# a user namespace, which has it; helper-14), sends a neighbour solicitation whose
# destination is the claimed address (the on-link IPv6 claims): a host that forwards it sends
# a redirect and keeps an entry for the destination.
CLAIM = r"""
d=$(ip -o route get {gw4} | sed -n 's/.* dev \([^ ]*\).*/\1/p')
send() {{ perl -MIO::Socket::IP -MSocket=:all -e '
  $s = IO::Socket::IP->new(PeerHost => $ARGV[0], PeerPort => 9, Proto => "udp",
                           LocalHost => $ARGV[1] || undef) or die "$ARGV[1]: $@";
  if ($ARGV[2]) {{ $s->sockdomain == AF_INET6 ? setsockopt($s, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 1)
                                             : setsockopt($s, IPPROTO_IP, IP_TTL, 1) }}
  $s->send("x" x ($ARGV[3] || 1)); select(undef, undef, undef, 0.3)' "$@"; }}
send {gw4} "" 0
mac=$(ip neigh show {gw4} dev $d | sed -n 's/.*lladdr \([^ ]*\).*/\1/p')
ip route add 198.51.100.99/32 via {gw4} dev $d; ip -6 route add 2001:db8:77::1/128 via {gw6} dev $d
unshare -Urn sleep 30 & ns=$!; sleep 0.3
ip link add fortressnd link $d type macvlan mode private && ip link set fortressnd netns $ns
nsenter -t $ns -U -n --preserve-credentials bash -c '
  ip link set lo up; ip link set fortressnd up
  ip -6 addr add {source6}/128 dev fortressnd nodad; i=$(ip -o link show fortressnd | cut -d: -f1)
  for a in {claims6}; do
    ip -6 route add $a/128 dev fortressnd; ip -6 neigh add $a lladdr '$mac' dev fortressnd
    perl -MSocket=:all -e "
      socket(S, AF_INET6, SOCK_RAW, 58) or die qq{{raw: \$!}};
      setsockopt(S, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 255) or die qq{{hops: \$!}};
      bind(S, pack_sockaddr_in6(0, inet_pton(AF_INET6, q{{{source6}}}))) or die qq{{bind: \$!}};
      \$to = inet_pton(AF_INET6, \$ARGV[0]);
      send(S, pack(q{{CCnNa16}}, 135, 0, 0, 0, \$to), 0, pack_sockaddr_in6(0, \$to, \$ARGV[1]))
        or die qq{{send: \$!}}; print qq{{solicited \$ARGV[0]\n}}" $a $i
  done'
kill $ns
# Leaving the interface, every fragment but the first is dropped (IPv4 offset, IPv6 fragment
# header offset): direct-action classic BPF, TC_ACT_SHOT (2) or TC_ACT_UNSPEC (-1).
tc qdisc add dev $d clsact
tc filter add dev $d egress prio 1 bpf da bytecode "11,40 0 0 12,21 0 2 2048,40 0 0 20,\
69 5 6 8191,21 0 5 34525,48 0 0 20,21 0 3 44,40 0 0 56,69 0 1 65528,6 0 0 2,6 0 0 4294967295" \
  && echo "fragment filter on"
for a in {addrs}; do
  case $a in
    *:*) f=-6 p=128 gw={gw6} to=2001:db8:77::1 x=nodad;;
    *) f=-4 p=32 gw={gw4} to=198.51.100.99 x=;;
  esac
  case $a in fe80:*) l=$a%$d;; *) l=$a;; esac
  ip $f addr add $a/$p dev $d $x
  ip neigh flush dev $d; send $gw $l 0
  case " {control} " in *" $a "*) ;; *)
    ip neigh replace $gw lladdr $mac dev $d nud permanent
    send $to $l 1; send $gw $l 0 3000; ip neigh del $gw dev $d;;
  esac
  ip $f addr del $a/$p dev $d
done
tc qdisc del dev $d clsact
ip route del 198.51.100.99/32; ip -6 route del 2001:db8:77::1/128
echo DONE
"""


FRAGMENT_TIMERS = (
    "net.ipv4.ipfrag_time",
    "net.ipv6.ip6frag_time",
    "net.netfilter.nf_conntrack_frag6_timeout",
)


@dataclass
class Claims:
    """What root in the outer claimed, and the host's neighbour entries (every interface)."""

    claimed: list[str]  # addresses outside the network's range
    control: list[str]  # unused addresses of its range
    entries: set[str]
    output: str
    solicited: list[str]  # the claims (4) sends its solicitations to

    @property
    def ran(self) -> bool:
        """Every step ran: no perl error, the fragment filter on, every solicitation sent."""
        lines = self.output.splitlines()
        sent = [line.split()[1] for line in lines if line.startswith("solicited ")]
        return (
            "DONE" in self.output
            and " at -e line" not in self.output
            and "fragment filter on" in self.output
            and sent == self.solicited
        )


def neighbour_claims(host: Shell, policy: str = POLICY) -> Claims:
    """Root in the host's outer claims addresses that are not its network's (a documentation
    address of each family, the pool's next /28, which is another tenant's, an address of the
    host's uplink subnet, an address of its /64 outside the /124 Docker gives out, a link-local
    one) and unused ones of its own range (the control), each as CLAIM says; then the host's
    neighbour entries on every interface. The entries made are removed again."""
    name = f"{contract().EGRESS_NETWORK_PREFIX}{policy}.{host.outer}"
    net = json.loads(host.sh(f"docker network inspect {name}"))[0]
    subnets = [ipaddress.ip_network(c["Subnet"]) for c in net["IPAM"]["Config"]]
    sub4 = next(s for s in subnets if s.version == 4)
    sub6 = next(s for s in subnets if s.version == 6)
    # The host's own uplink: its first global IPv4 address on an interface that is not a
    # container bridge or veth, loopback or the test world's (a VM on QEMU's restricted
    # network has no default route to find it by).
    skip = ["lo", "docker", "br-", "veth", INTERFACE, contract().EGRESS_BRIDGE_PREFIX]
    found = re.search(
        rf"^\d+: (?!(?:{'|'.join(map(re.escape, skip))})[\s\S])\S+\s+inet (\S+)",
        host.sh("ip -o -4 addr show scope global"),
        re.MULTILINE,
    )
    if not found:
        raise LabError("the host has no global IPv4 address outside its container bridges")
    lan = ipaddress.ip_interface(found.group(1)).network
    gw4, gw6, _port = gateways(host, policy)
    claimed = [
        "198.51.100.7",
        str(sub4.broadcast_address + 6),
        str(lan.broadcast_address - 6),
        "2001:db8::7",
        str(sub6.network_address + 0x10007),
        "fe80::dead:7",
    ]
    control = [
        str(sub4.broadcast_address - 1),
        str(sub6.network_address + 0xE),
        str(sub6.network_address + 0xD),  # the source of (4)
    ]
    # (4) solicits the on-link ones: an unreachable 2001:db8::7 first would hold back the
    # host's redirects.
    solicited = [a for a in claimed if a.startswith("fe80:") or ipaddress.ip_address(a) in sub6]
    script = CLAIM.format(
        addrs=" ".join(claimed + control),
        control=" ".join(control),
        gw4=gw4,
        gw6=gw6,
        source6=str(sub6.network_address + 0xD),
        claims6=" ".join(solicited),
    )
    # A reassembly the host begins times out after a second instead of 30 s (IPv4) and 60 s
    # (IPv6; netfilter's own queue when conntrack defragments IPv6): the host's own
    # namespace's settings, restored afterwards.
    timers = {}
    for key in FRAGMENT_TIMERS:
        found = host.run(f"sysctl -n {key}")
        if found.rc == 0:
            timers[key] = found.stdout.strip()
    host.sh("sysctl -qw " + " ".join(f"{key}=1" for key in timers))
    try:
        out = host.sh(f"docker exec -u 0 fortress-outer-{host.outer} bash -c {shlex.quote(script)}")
        time.sleep(3)
        table = host.sh("ip neigh show nud all")  # entries without an address too (NONE)
    finally:
        host.sh("sysctl -qw " + " ".join(f"{key}={value}" for key, value in timers.items()))
        host.sh("; ".join(f"ip neigh flush to {a} nud all 2>/dev/null" for a in claimed + control))
    entries = {line.split()[0] for line in table.splitlines() if line.strip()}
    return Claims(claimed, control, entries, out, solicited)


def check(host: Shell, policy: str = POLICY) -> Outcome:
    """Every check, in one sandbox on the policy (all at once: about one nc timeout)."""
    gw4, gw6, port = gateways(host, policy)
    # All checks at once (about 60 processes): a pids limit above the default 256, which
    # counts the Sentry's host threads and stub processes too and, when it fires, kills the
    # whole sandbox (tests/security/test_exhaustion.py).
    raw = run_sandboxed(
        host, script=script(), network=policy, pids=2048,
        env={"GW4": gw4, "GW6": gw6, "PORT": str(port)},
    )  # fmt: skip
    verdicts, runtime, env_proxy = {}, "", ""
    name, output = "", []
    for line in [*raw.replace("\r", "").splitlines(), "=== check "]:
        if line.startswith("=== check "):
            if name:
                verdicts[name] = verdict(name, "\n".join(output))
            name, output = line[len("=== check ") :], []
        elif line.startswith("runtime "):
            runtime = line.partition(" ")[2]
        elif line.startswith("env "):
            env_proxy = line.partition("=")[2]
        else:
            output.append(line)
    return Outcome(verdicts, runtime, env_proxy, raw)


def observe(host: Shell, policy: str = POLICY) -> Outcome:
    """`check`, with the requests each world server got meanwhile (`Outcome.delta`)."""
    before = hits(host)
    result = check(host, policy)
    after = hits(host)
    result.delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    return result


def without_firewall(host: Shell) -> Outcome:
    """The firewall's control: `check` with the egress table deleted, then the table loaded
    again by its unit (as at boot); a LabError unless the listing is the same as before."""
    table = host.sh(f"nft -s list table {TABLE}")
    host.sh(f"nft delete table {TABLE}")
    try:
        return check(host)
    finally:
        host.sh("systemctl restart fortress-egress-firewall.service")
        if host.sh(f"nft -s list table {TABLE}") != table:
            raise LabError("fortress-egress-firewall.service did not load the same table again")


@contextmanager
def world(host: Shell) -> Iterator[Shell]:
    """The world, up for the block and removed after."""
    world_up(host)
    try:
        yield host
    finally:
        world_down(host)


def world_up(host: Shell) -> None:
    """Build the world on the host (idempotent: a previous world is torn down first)."""
    world_down(host)
    encoded = base64.b64encode(WORLD.encode()).decode()
    hosts = "\n".join(f"{addr} {name} # fortress-egress-world" for name, addr in NAMES.items())
    ns = f"ip netns exec {NAMESPACE}"
    commands = [
        "set -e",
        # The host's own IPv6 addresses (the gateway's) are reached over lo, which container
        # lab hosts start with IPv6 off: on for the world, restored by world_down.
        f"mkdir -p {WORLD_DIR}",
        f"cat /proc/sys/net/ipv6/conf/lo/disable_ipv6 > {WORLD_DIR}/lo-ipv6",
        "sysctl -qw net.ipv6.conf.lo.disable_ipv6=0",
        f"ip netns add {NAMESPACE}",
        f"ip link add {INTERFACE} type veth peer name {INTERFACE}-p netns {NAMESPACE}",
        f"sysctl -qw net.ipv6.conf.{INTERFACE}.disable_ipv6=0",
        f"{ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=0",
        f"ip link set {INTERFACE} up",
        f"{ns} ip link set {INTERFACE}-p up && {ns} ip link set lo up",
        f"ip addr add {LINK4[0]} dev {INTERFACE}",
        f"ip -6 addr add {LINK6[0]} dev {INTERFACE} nodad",
        f"{ns} ip addr add {LINK4[1]} dev {INTERFACE}-p",
        f"{ns} ip -6 addr add {LINK6[1]} dev {INTERFACE}-p nodad",
        f"{ns} ip route add default via {LINK4[0].split('/')[0]}",
        f"{ns} ip -6 route add default via {LINK6[0].split('/')[0]}",
        *(f"{ns} ip addr add {a} dev lo" for a in ADDRESSES),
        *(f"ip route add {a} via {(LINK6 if ':' in a else LINK4)[1].split('/')[0]}"
          for a in ADDRESSES),
        f"mkdir -p {WORLD_DIR} && : > {WORLD_DIR}/hits",
        f"echo {encoded} | base64 -d > {WORLD_DIR}/world.py",
        # /etc/hosts may be a bind mount (container lab hosts): append, and remove in place.
        f"printf '%s\\n' {shlex.quote(hosts)} >> /etc/hosts",
        *(f"setsid {prefix}python3 {WORLD_DIR}/world.py {WORLD_DIR}/hits {side}"
          f" > {WORLD_DIR}/log-{side} 2>&1 < /dev/null & echo $! >> {WORLD_DIR}/pids"
          for side, prefix in (("remote", ns + " "), ("host", ""))),
    ]  # fmt: skip
    out = host.sh("\n".join(commands) + "\necho world-started")
    if "world-started" not in out:
        raise LabError(f"the egress test world did not start on the host: {out[-400:]}")
    for _ in range(100):
        log = host.sh(f"cat {WORLD_DIR}/log-remote {WORLD_DIR}/log-host")
        if log.count("world ready") == 2:
            return
        if "Error" in log:
            break
        time.sleep(0.1)
    raise LabError(f"the egress test world's servers did not start: {log[-600:]}")


def world_down(host: Shell) -> None:
    """Remove the world: servers, interface, names."""
    host.sh(
        f"[ -f {WORLD_DIR}/pids ] && kill $(cat {WORLD_DIR}/pids) 2>/dev/null; "
        f"ip link del {INTERFACE} 2>/dev/null; ip netns del {NAMESPACE} 2>/dev/null; "
        f"[ -f {WORLD_DIR}/lo-ipv6 ]"
        f" && sysctl -qw net.ipv6.conf.lo.disable_ipv6=$(cat {WORLD_DIR}/lo-ipv6); "
        f"rm -rf {WORLD_DIR}; "
        "grep -v 'fortress-egress-world' /etc/hosts > /tmp/hosts.fortress; "
        "cat /tmp/hosts.fortress > /etc/hosts; rm -f /tmp/hosts.fortress; true"
    )


def hits(host: Shell) -> dict[str, int]:
    """How many requests each world server got."""
    counts: dict[str, int] = {}
    for line in host.run(f"cat {WORLD_DIR}/hits").stdout.splitlines():
        name = line.split(" ", 1)[0]
        if name:
            counts[name] = counts.get(name, 0) + 1
    return counts


def control(host: Shell) -> dict[str, str]:
    """The world answers from the host itself (outside every policy): each server that a
    check expects nothing from does answer when asked directly, so "none" means blocked."""
    gw4, gw6 = gateways(host)[:2]
    out = host.run(
        "python3 - <<'EOF'\n"
        "import socket, urllib.request\n"
        f"for name, url in [('api', 'http://198.51.100.10/'), ('metadata', 'http://169.254.169.254/'),"
        f" ('forbidden', 'http://198.51.100.20/'), ('host_service', 'http://{gw4}:18081/'),"
        f" ('host_service6', 'http://[{gw6}]:18081/')]:\n"
        "    try:\n"
        "        body = urllib.request.urlopen(url, timeout=5).read().decode().strip()\n"
        "    except OSError as exc:\n"
        "        body = 'none ' + str(exc)\n"
        "    print(name, body)\n"
        "EOF"
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
