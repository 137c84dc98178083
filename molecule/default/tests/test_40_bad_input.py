"""Bad input fails with one clear message before any change, and leaves nothing behind."""

from __future__ import annotations

import functools
import hashlib
import http.server
import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fortress_lab.common import REPO_ROOT
from fortress_lab.playbook import assert_refused_before_any_change, run_playbook

DAEMON_JSON = "/etc/docker/daemon.json"
URL_RUNSC = "/usr/local/bin/runsc"
RUNSC_PATH = """docker info --format '{{json (index .Runtimes "runsc").Path}}'"""
# The install source is the host layer's concern: its play alone (site.yml's first plays).
DOCKER_HOST = REPO_ROOT / "playbooks" / "docker_host.yml"


def _fingerprint(h) -> dict[str, object]:
    return {
        "daemon.json": h.file(DAEMON_JSON).content_string,
        "runsc package": h.run("dpkg-query -W -f='${Version}' runsc").stdout,
        "url runsc": h.file(URL_RUNSC).exists,
        "docker": h.service("docker").is_running,
        "netns": h.run("ip netns list").stdout,
        "runsc processes": h.run("pgrep -af '^runsc'").stdout,
        "smoke dirs": h.run("ls -d /tmp/fortress-smoke.* 2>/dev/null").stdout,
        "egress table": h.run("nft -s list table inet fortress_egress").stdout,
    }


@pytest.fixture(scope="module")
def file_server(debian12_host, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """An HTTP server on this machine's side of the lab bridge (the host's default gateway),
    serving a directory: the 'mirror' of the url install source."""
    gateway = debian12_host.check_output("ip route show default").split()[2]
    root = tmp_path_factory.mktemp("mirror")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((gateway, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{gateway}:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


BAD_INPUT = {
    "unknown install source": ({"gvisor_source": "tarball"}, ["gvisor_source", "apt, url, distro"]),
    "unknown Docker source": ({"docker_engine_source": "snap"}, ["docker_engine_source"]),
    "invalid platform": ({"gvisor_platform": "hyperv"}, ["gvisor_platform", "systrap"]),
    "runtime flag whose value Docker's shell wrapper would split into more flags": (
        {"gvisor_runtime_extra_args": ["--overlay2=root:memory --strace"]},
        ["not ones the sandbox library", "--strace", "gvisor_runtime_extra_args"],
    ),
    "runtime flag no sandbox may run under (a strace runtime)": (
        {"gvisor_runtime_extra_args": ["--strace"]},
        ["not ones the sandbox library", "--strace", "gvisor_runtime_extra_args"],
    ),
    "sandbox network on a kernel this runsc cannot serve (gVisor issue 10704)": (
        {"gvisor_network": "sandbox"},
        ["10704", "gvisor_network", "upgrade runsc"],
    ),
    "egress rule naming an address where a host name is required": (
        {"egress_policies": [{"name": "lab", "allow": ["198.51.100.10"]}]},
        ["egress_policies", "names an address", "198.51.100.10/32:PORT"],
    ),
    "egress resolver that is not an address": (
        {"egress_proxy_resolvers": ["dns.example"]},
        ["egress_proxy_resolvers", "dns.example is not an IP address"],
    ),
    "url source without a checksum": (
        {"gvisor_source": "url", "gvisor_url": "http://mirror.invalid/runsc"},
        ["gvisor_url_sha512"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_clearly_before_any_change(case, inventory, debian12, debian12_host):
    extra_vars, phrases = BAD_INPUT[case]
    assert_refused_before_any_change(
        inventory, debian12, extra_vars, phrases, lambda: _fingerprint(debian12_host), case
    )


def test_an_egress_pool_inside_the_hosts_lan_is_refused(inventory, debian12, debian12_host):
    """The host's own LAN as the egress pool: its tenants' /28s would take LAN addresses
    from the host (their routes are more specific). Refused in the preflight, naming the
    route, before any change."""
    found = debian12_host.check_output("ip -o -4 addr show dev eth0 scope global").split()[3]
    lan = ipaddress.ip_interface(found).network
    pool = str(lan if lan.prefixlen <= 28 else lan.supernet(new_prefix=28))
    assert_refused_before_any_change(
        inventory,
        debian12,
        {"egress_subnet_pool": pool},
        ["egress_subnet_pool", f"overlaps the host's route to {lan}"],
        lambda: _fingerprint(debian12_host),
        "egress pool inside the host's LAN",
    )


def test_checksum_mismatch_refuses_the_download(inventory, debian12, debian12_host, file_server):
    url, root = file_server
    (root / "runsc-bad").write_bytes(b"#!/bin/sh\necho not runsc\n")
    before = _fingerprint(debian12_host)
    run = run_playbook(
        inventory,
        limit=debian12,
        extra_vars={
            "gvisor_source": "url",
            "gvisor_url": f"{url}/runsc-bad",
            "gvisor_url_sha512": "0" * 128,
        },
    )
    assert run.rc != 0
    assert "checksum" in run.failure_text(debian12).lower(), run.failure_text(debian12)
    assert _fingerprint(debian12_host) == before


def test_url_source_installs_a_pinned_binary(inventory, debian12, debian12_host, file_server):
    """The air-gapped path for real: a runsc binary from a mirror, pinned by sha512, smoke
    started and registered; then the distribution source is restored."""
    url, root = file_server
    binary = root / "runsc"
    binary.write_bytes(debian12_host.file("/usr/bin/runsc").content)
    sha512 = hashlib.sha512(binary.read_bytes()).hexdigest()
    dockerd = debian12_host.check_output("systemctl show -p MainPID --value docker")
    run = run_playbook(
        inventory,
        playbook=DOCKER_HOST,
        limit=debian12,
        extra_vars={
            "gvisor_source": "url",
            "gvisor_url": f"{url}/runsc",
            "gvisor_url_sha512": sha512,
        },
    )
    try:
        assert run.rc == 0, run.output[-4000:]
        assert debian12_host.check_output(f"sha512sum {URL_RUNSC}").split()[0] == sha512
        info = debian12_host.check_output(RUNSC_PATH)
        assert info == f'"{URL_RUNSC}"'
        # Only `runtimes` changed: applied by a reload (SIGHUP), dockerd was not restarted.
        assert "Reload docker" in run.changed.get(debian12, []), run.changed
        assert debian12_host.check_output("systemctl show -p MainPID --value docker") == dockerd
    finally:
        restore = run_playbook(inventory, playbook=DOCKER_HOST, limit=debian12)
        debian12_host.run(f"rm -f {URL_RUNSC}")
    assert restore.rc == 0, restore.output[-4000:]
    assert debian12_host.check_output(RUNSC_PATH) == ('"/usr/bin/runsc"')
