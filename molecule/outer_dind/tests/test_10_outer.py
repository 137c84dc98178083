"""The outer containers, read from the lab host's side: exactly the documented capabilities,
our seccomp profile, no host devices or sockets, limits, the inner daemon, the socket."""

from __future__ import annotations

import base64
import json
import shlex

from conftest import NEIGHBOUR, PLATFORM, REPO, ROLE_DEFAULTS, inner, inspect, socket

from fortress_lab.common import contract

# The dind host; test_50_userns.py covers the userns one.
testinfra_hosts = [f"ansible://{PLATFORM}"]

# Linux capability numbers (linux/capability.h), to decode /proc/<pid>/status.
CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]
SECCOMP_DEFAULT = "seccomp-docker-default.json"
DOCUMENTED_CAPS = set(ROLE_DEFAULTS["outer_sandbox_capabilities"])


def to_bytes(size: str) -> int:
    return int(size[:-1]) << {"k": 10, "m": 20, "g": 30}[size[-1].lower()]


def decode_caps(hexmask: str) -> set[str]:
    mask = int(hexmask, 16)
    return {name for bit, name in enumerate(CAPS) if mask >> bit & 1}


def proc_status(host, pid: int) -> dict[str, str]:
    lines = host.file(f"/proc/{pid}/status").content_string.splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_outer_has_exactly_the_documented_capabilities(host, tenant) -> None:
    info = inspect(host, tenant)
    assert info["HostConfig"]["Privileged"] is False
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    assert {c.removeprefix("CAP_") for c in info["HostConfig"]["CapAdd"]} == DOCUMENTED_CAPS
    # What the kernel gave the outer's processes, not only what Docker recorded.
    status = proc_status(host, info["State"]["Pid"])
    assert decode_caps(status["CapEff"].strip()) == DOCUMENTED_CAPS
    assert decode_caps(status["CapBnd"].strip()) == DOCUMENTED_CAPS


def test_outer_runs_our_seccomp_profile(host, tenant) -> None:
    info = inspect(host, tenant)
    opts = info["HostConfig"]["SecurityOpt"]
    seccomp = [o for o in opts if o.startswith("seccomp=")]
    assert len(seccomp) == 1 and "unconfined" not in seccomp[0]
    profile = json.loads(seccomp[0].removeprefix("seccomp="))
    vendored = json.loads((REPO / "roles/outer_sandbox/files" / SECCOMP_DEFAULT).read_text())
    # Docker's default profile with the new mount API answered ENOSYS (taken out of its
    # rules), socket allowed for every address family but AF_VSOCK (taken out of the
    # unconditional allow), then exactly one rule allowing the documented syscalls.
    enosys = ROLE_DEFAULTS["outer_sandbox_seccomp_enosys_syscalls"]
    assert profile["defaultAction"] == vendored["defaultAction"] == "SCMP_ACT_ERRNO"

    def out(rule: dict) -> set:
        plain = rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        return set(enosys) | ({"socket"} if plain else set())

    kept = [
        {**rule, "names": [n for n in rule["names"] if n not in out(rule)]}
        for rule in vendored["syscalls"]
        if set(rule["names"]) - out(rule)
    ]
    assert profile["syscalls"][:-3] == kept
    assert profile["syscalls"][-3] == {"names": enosys, "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert profile["syscalls"][-2] == {
        "names": ["socket"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}],
    }
    assert profile["syscalls"][-1] == {
        "names": ROLE_DEFAULTS["outer_sandbox_seccomp_extra_syscalls"],
        "action": "SCMP_ACT_ALLOW",
    }
    # The host-side copy is the profile the container runs with.
    assert json.loads(host.file("/etc/fortress/outer/seccomp.json").content_string) == profile
    # The kernel filters the outer's processes (mode 2 = seccomp filter).
    assert proc_status(host, info["State"]["Pid"])["Seccomp"].strip() == "2"


def test_outer_has_no_host_devices_sockets_or_writable_kernel_tunables(host, tenant) -> None:
    info = inspect(host, tenant)
    assert not info["HostConfig"]["Devices"]
    sources = {m["Source"] for m in info["Mounts"]}
    assert not {"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/"} & sources
    assert all(
        not s.startswith(("/dev", "/proc", "/var/lib/docker/")) or "/volumes/" in s for s in sources
    ), sources
    # Docker's masked and read-only paths stay (kcore masked, /proc/sys read-only).
    assert "/proc/kcore" in info["HostConfig"]["MaskedPaths"]
    assert "/proc/sys" in info["HostConfig"]["ReadonlyPaths"]
    write = "echo x > /proc/sys/kernel/core_pattern"
    probe = host.run(f"docker exec fortress-outer-{tenant} sh -c '{write}'")
    assert probe.rc != 0 and "Read-only file system" in probe.stderr


def test_the_outers_root_is_read_only_and_its_health_check_sees_the_inner_daemon(
    host, tenant
) -> None:
    """CIS Docker 5.13 and 5.27 for the outer: root in it writes only the inner daemon's store,
    /run and /tmp (bounded tmpfs, fresh on every start); its health check passes because the
    inner daemon answers on its socket, and fails against a socket that never answers."""
    info = inspect(host, tenant)
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    tmpfs = info["HostConfig"]["Tmpfs"]
    assert sorted(tmpfs) == ["/run", "/tmp"] and all("size=" in o for o in tmpfs.values()), tmpfs
    outer = f"docker exec fortress-outer-{tenant}"
    for path in ["/x", "/etc/x", "/usr/local/sbin/x", "/var/x", "/opt/x", "/root/x"]:
        probe = host.run(f"{outer} touch {path}")
        assert probe.rc != 0 and "Read-only file system" in probe.stderr, (path, probe.stderr)
    writable = "/run/x /tmp/x /var/lib/docker/x"
    assert host.run(f"{outer} sh -c 'touch {writable} && rm {writable}'").rc == 0  # control
    assert info["State"]["Health"]["Status"] == "healthy", info["State"]["Health"]
    kind, *argv = info["Config"]["Healthcheck"]["Test"]
    assert kind == "CMD"
    assert host.run(f"{outer} timeout 10 {shlex.join(argv)}").rc == 0
    # Red control: the same check against a socket that accepts and never answers.
    mute = "IO::Socket::UNIX->new(Local => '/tmp/mute.sock', Listen => 1) or die; sleep 30"
    host.check_output(
        f"{outer} sh -c {shlex.quote(f'perl -MIO::Socket::UNIX -e {shlex.quote(mute)} &')}"
    )
    try:
        host.check_output(
            f"{outer} sh -c 'for i in 1 2 3 4 5; do [ -S /tmp/mute.sock ] && break; sleep 1; done'"
        )
        muted = [a.replace("/run/fortress/docker.sock", "/tmp/mute.sock") for a in argv]
        assert muted != argv
        assert host.run(f"{outer} timeout 5 {shlex.join(muted)}").rc != 0
    finally:
        host.run(f"{outer} sh -c 'pkill -f mute.sock; rm -f /tmp/mute.sock'")


def test_outer_limits_and_restart_policy(host, tenant) -> None:
    info = inspect(host, tenant)
    wanted = host.ansible.get_variables()["outer_sandbox_instances"]
    item = next(i for i in wanted if i["name"] == tenant)
    defaults = host.ansible.get_variables()["outer_sandbox_instance_defaults"]
    memory = to_bytes(item.get("memory", defaults["memory"]))
    hc = info["HostConfig"]
    assert hc["Memory"] == memory and hc["MemorySwap"] == memory
    assert hc["NanoCpus"] == int(float(item.get("cpus", defaults["cpus"])) * 1e9)
    assert hc["PidsLimit"] == item.get("pids_limit", defaults["pids_limit"])
    assert hc["RestartPolicy"]["Name"] == "unless-stopped"
    data = [m for m in info["Mounts"] if m["Destination"] == "/var/lib/docker"]
    assert [m["Type"] for m in data] == ["volume"]


def test_inner_daemon_defaults_to_runsc_without_tcp(host, tenant) -> None:
    info = json.loads(host.check_output(f"{inner(tenant)} info --format '{{{{json .}}}}'"))
    assert info["DefaultRuntime"] == "runsc"
    assert {"runsc", "runsc-nonet"} <= set(info["Runtimes"])
    assert info["LiveRestoreEnabled"] is True
    cfg = json.loads(host.file(f"/etc/fortress/outer/{tenant}/daemon.json").content_string)
    assert cfg["hosts"] == ["unix:///run/fortress/docker.sock"]
    assert cfg["icc"] is False and cfg["log-opts"]["max-size"] == "10m"
    tables = "/proc/net/tcp /proc/net/tcp6"
    listening = host.check_output(f"docker exec fortress-outer-{tenant} cat {tables}")
    # State 0A = LISTEN. 127.0.0.11 is the embedded DNS of the host dockerd's network the outer
    # is on (in the outer's network namespace), not the inner daemon's.
    listeners = [line.split()[1] for line in listening.splitlines() if line.split()[3:4] == ["0A"]]
    assert [addr for addr in listeners if not addr.startswith("0B00007F:")] == []


def test_socket_is_root_only(host, tenant) -> None:
    sock = host.file(socket(tenant))
    assert sock.is_socket and sock.user == "root" and sock.group == "root" and sock.mode == 0o660
    directory = host.file(f"/run/fortress/outer/{tenant}")
    assert directory.user == "root" and directory.mode == 0o750


def test_tenants_are_separate(host) -> None:
    a, b = inspect(host, "tenant-a"), inspect(host, "tenant-b")
    assert a["HostConfig"]["NetworkMode"] == contract().EGRESS_NETWORK_PREFIX + "lab.tenant-a"
    vol = {
        t: next(m["Name"] for m in i["Mounts"] if m["Destination"] == "/var/lib/docker")
        for t, i in (("a", a), ("b", b))
    }
    assert vol["a"] != vol["b"]
    started = host.check_output(
        f"{inner('tenant-a')} run -d --network none fortress/smoke:busybox sleep 30"
    )
    try:
        in_b = host.check_output(f"docker -H unix://{socket('tenant-b')} ps -aq --no-trunc")
        assert started not in in_b
    finally:
        host.run(f"docker -H unix://{socket('tenant-a')} rm -f {started}")


# Root in an outer (a sandbox that escaped gVisor) probing every IPv4 address of the lab host
# on a port the test listens on, then printing the routes and addresses it has.
PROBE = (
    'for a in {addrs}; do timeout 3 bash -c "echo > /dev/tcp/$a/{port}" 2>/dev/null '
    "&& echo REACHED $a; done; echo ROUTES; ip route; ip -6 route; echo LINKS; ip -o link"
)


def test_root_in_an_outer_without_egress_has_no_way_out(host) -> None:
    """tenant-b names no egress policy and no network: the role's default. Root in it reaches
    none of the lab host's addresses and has no route at all. Red control: the same probe from
    a container on a bridge network like the one such an outer had before reaches the host."""
    port = 18765
    addrs = host.check_output("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1")
    probe = PROBE.format(addrs=" ".join(addrs.split()), port=port)
    listener = (
        f"setsid -f timeout 120 python3 -m http.server {port} --bind 0.0.0.0 "
        "</dev/null >/dev/null 2>&1"
    )
    host.check_output(listener)
    image = inspect(host, "tenant-b")["Config"]["Image"]
    net = "fortress-test-nat"
    try:
        host.check_output(
            f"docker network create -o com.docker.network.bridge.enable_icc=false {net}"
        )
        control = host.check_output(
            f"docker run --rm --network {net} --entrypoint bash {image} -c '{probe}'"
        )
        assert "REACHED" in control, control  # the probe sees a way out where there is one
        got = host.check_output(f"docker exec fortress-outer-tenant-b bash -c '{probe}'")
    finally:
        host.run(f"docker network rm {net}")
        host.run(f"pkill -f 'http.server {port}'")
    assert "REACHED" not in got, got
    assert inspect(host, "tenant-b")["HostConfig"]["NetworkMode"] == "none"
    routes = got.split("ROUTES")[1].split("LINKS")[0]
    assert routes.split() == [], got  # no route, IPv4 or IPv6
    links = [line.split(":")[1].strip() for line in got.split("LINKS")[1].strip().splitlines()]
    assert links == ["lo"], got
    # The role's own default is that, not only the lab's.
    assert ROLE_DEFAULTS["outer_sandbox_instance_defaults"].get("network") is None


def addresses(outer: dict) -> tuple[list[str], list[str]]:
    """An outer container's IPv4 and IPv6 addresses and its networks' gateways."""
    nets = outer["NetworkSettings"]["Networks"].values()
    own = [a for n in nets for a in (n["IPAddress"], n["GlobalIPv6Address"]) if a]
    gateways = [g for n in nets for g in (n["Gateway"], n["IPv6Gateway"]) if g]
    return own, gateways


# Root in an outer looking for a neighbour: the name Docker's embedded DNS would give it, then
# a connection to each address (which makes the kernel resolve it on the link, whatever a
# firewall does with the connection), then the neighbour table: an entry with a link-layer
# address is a host on the same L2 segment.
NEIGHBOUR_PROBE = (
    "for n in {names}; do timeout 10 getent hosts $n >/dev/null && echo NAMED $n; done; "
    'for a in {addrs}; do timeout 2 bash -c "echo > /dev/tcp/$a/9" 2>/dev/null; done; '
    "echo NEIGH; ip neigh show; ip -6 neigh show"
)


def test_tenants_on_one_egress_policy_share_no_segment_and_no_names(host) -> None:
    """tenant-a and tenant-c name the same egress policy. Root in tenant-a's outer (a sandbox
    that escaped gVisor) neither resolves tenant-c's container name nor finds tenant-c's
    addresses on its link (a neighbour there could take tenant-c's address and receive its
    replies, the proxy's included). Red control: in the same probe, tenant-a's own name
    resolves and its gateway (the proxy's address) shows up as a neighbour."""
    gateways = addresses(inspect(host, "tenant-a"))[1]
    theirs = addresses(inspect(host, NEIGHBOUR))[0]
    assert gateways and theirs, (gateways, theirs)
    names = ["fortress-outer-tenant-a", f"fortress-outer-{NEIGHBOUR}"]
    probe = NEIGHBOUR_PROBE.format(names=" ".join(names), addrs=" ".join(gateways + theirs))
    got = host.check_output(f"docker exec fortress-outer-tenant-a bash -c '{probe}'")
    neighbours = {
        line.split()[0] for line in got.split("NEIGH")[1].splitlines() if "lladdr" in line
    }
    assert "NAMED fortress-outer-tenant-a" in got, got  # the probe names what it can
    assert neighbours & set(gateways), got  # ... and sees a neighbour where there is one
    assert f"NAMED fortress-outer-{NEIGHBOUR}" not in got, got
    assert not neighbours & set(theirs), got


# AF_VSOCK (40), SOCK_STREAM: vsock has no network namespaces, so a socket of it reaches the
# hypervisor (CID 2), the machine's own vsock services and, on a host that runs VMs, the VMs.
VSOCK = "perl -e 'socket(my $s, 40, 1, 0) ? print qq(OPEN) : print qq(REFUSED $!)'"


def test_root_in_an_outer_opens_no_vsock_socket(host, tenant) -> None:
    """Network mode none closes every network namespace's way out, not vsock's: the outer's
    seccomp profile refuses the socket (as Docker's own default profile does since 23.0).
    Red control: root on the lab host, on the same kernel, opens one."""
    assert host.check_output(VSOCK) == "OPEN"  # the kernel has vsock: the probe can see it
    got = host.check_output(f"docker exec fortress-outer-{tenant} {VSOCK}")
    assert got.startswith("REFUSED"), got


# Kernel interfaces root in an outer could turn on the host's kernel, each tried once (x86_64
# numbers): loading a trivial socket-filter BPF program ("r0 = 0; exit"; a kprobe program
# reads kernel memory), a system-wide perf event (pid -1, cpu 0) and an io_uring (a syscall
# surface seccomp never sees). Each prints NAME OPEN or NAME REFUSED <errno>. Nothing is
# attached or written: the descriptors close when the probe exits.
KERNEL_PROBE = r"""
my $insns = pack("CCsl", 0xb7, 0, 0, 0) . pack("CCsl", 0x95, 0, 0, 0);
my $prog = pack("LLPp", 1, 2, $insns, "GPL"); $prog .= "\0" x (128 - length $prog);
my $perf = pack("LLQ", 1, 64, 0) . ("\0" x 48);
my $ring = "\0" x 120;
for my $try (["bpf", sub { syscall(321, 5, $prog, length $prog) }],
             ["perf_event_open", sub { syscall(298, $perf, -1, 0, -1, 0) }],
             ["io_uring_setup", sub { syscall(425, 1, $ring) }]) {
  my $fd = $try->[1]->();
  print $try->[0], $fd >= 0 ? " OPEN\n" : " REFUSED $!\n";
}
"""


def kernel_probe(host, where: str = "") -> dict[str, str]:
    """{syscall: OPEN or REFUSED <errno>} as root on the lab host, or in an outer (where)."""
    script = base64.b64encode(KERNEL_PROBE.encode()).decode()
    out = host.check_output(f"echo {script} | base64 -d | {where} perl")
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_root_in_an_outer_loads_no_bpf_opens_no_perf_event_and_no_io_uring(host, tenant) -> None:
    """Docker's default profile allows bpf and perf_event_open to a holder of CAP_SYS_ADMIN,
    which a dind outer is, and io_uring to anyone: the outer's profile refuses all three
    (runsc, containerd and dockerd in the outer use none of them: every sandbox test of this
    scenario and the VM's runs under it). Red control: root on the lab host, on the same
    kernel, gets each one."""
    assert kernel_probe(host) == dict.fromkeys(("bpf", "perf_event_open", "io_uring_setup"), "OPEN")
    got = kernel_probe(host, f"docker exec -i fortress-outer-{tenant}")
    assert set(got) == {"bpf", "perf_event_open", "io_uring_setup"}, got
    assert all(verdict.startswith("REFUSED") for verdict in got.values()), got
