"""Sysbox CE installed by the sysbox role on a fresh VM lab host: `make test-sysbox`.

Needs the sysbox-ce package, which this repository does not download:

    make test-sysbox FORTRESS_SYSBOX_DEB=/path/to/sysbox-ce_0.6.7-0.linux_amd64.deb

Without it every test here FAILS (it never skips): a run that proves nothing must not look
green. `make test` does not collect this directory (its unit and integration targets name
tests/unit and tests/integration).

The host is a Debian 12 VM lab host (its own kernel 6.1, so ID-mapped mounts; systemd as
PID 1; /dev/fuse for sysbox-fs), booted for this module on QEMU's user network so that apt
reaches the apt cache for the package's dependencies. It is converged three times with
playbooks/docker_host.yml: without Sysbox, with it (source path, the .deb copied from this
machine), and again (idempotence).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fortress_lab import vm
from fortress_lab.common import REPO_ROOT
from fortress_lab.playbook import PlaybookRun, run_playbook
from fortress_lab.pytest_plugin import run_cli, start_vm_lab

pytestmark = pytest.mark.lab

LAB = "pytest-sysbox"
HOST = "fortress-pytest-sysbox-1"
PLATFORMS = json.dumps([{"name": HOST, "image": "debian12"}])
PLAYBOOK = REPO_ROOT / "playbooks" / "docker_host.yml"
# What the VM lab hosts use (molecule/vm/group_vars): Docker and runsc from Debian.
HOST_VARS = {"docker_engine_source": "distro", "gvisor_source": "distro"}
CONVERGE_TIMEOUT = 3600  # software emulation: everything in the VM is about 20x slower


def _ssh(port: int, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        vm.ssh_argv(port, key, command), capture_output=True, check=False, text=True, timeout=600
    )


def _deb() -> Path:
    value = os.environ.get("FORTRESS_SYSBOX_DEB", "")
    if not value:
        pytest.fail(
            "FORTRESS_SYSBOX_DEB is not set: run `make test-sysbox "
            "FORTRESS_SYSBOX_DEB=/path/to/sysbox-ce_<version>.linux_amd64.deb` with a sysbox-ce "
            "package from https://github.com/nestybox/sysbox/releases.",
            pytrace=False,
        )
    deb = Path(value).resolve()
    if not deb.is_file():
        pytest.fail(
            f"FORTRESS_SYSBOX_DEB is {value}, which is not a file: point it at a sysbox-ce .deb.",
            pytrace=False,
        )
    return deb


@dataclass
class SysboxHost:
    port: int
    key: Path
    inventory: Path
    without: PlaybookRun  # converge with sysbox off
    with_sysbox: PlaybookRun  # converge with sysbox on
    again: PlaybookRun  # the same, a second time
    dockerd_pid_before: str  # dockerd's PID after the first converge

    def ssh(self, command: str) -> str:
        done = _ssh(self.port, self.key, command)
        assert done.returncode == 0, f"{command!r} failed ({done.returncode}): {done.stderr}"
        return done.stdout.strip()


def _dockerd_pid(port: int, key: Path) -> str:
    done = _ssh(port, key, "systemctl show --property=MainPID --value docker")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SysboxHost]:
    deb = _deb()
    inventory = tmp_path_factory.mktemp("sysbox-lab") / "hosts.yml"
    hostvars = start_vm_lab(LAB, PLATFORMS, inventory, HOST)
    try:
        port, key = int(hostvars["ansible_port"]), Path(hostvars["ansible_private_key_file"])
        without = run_playbook(
            inventory, playbook=PLAYBOOK, extra_vars=HOST_VARS, timeout=CONVERGE_TIMEOUT
        )
        assert without.rc == 0, without.failure_text(HOST) or without.output[-3000:]
        pid = _dockerd_pid(port, key)
        on = {**HOST_VARS, "sysbox_enabled": True, "sysbox_source": "path",
              "sysbox_deb_path": str(deb)}  # fmt: skip
        with_sysbox = run_playbook(
            inventory, playbook=PLAYBOOK, extra_vars=on, timeout=CONVERGE_TIMEOUT
        )
        again = run_playbook(inventory, playbook=PLAYBOOK, extra_vars=on, timeout=CONVERGE_TIMEOUT)
        yield SysboxHost(port, key, inventory, without, with_sysbox, again, pid)
    finally:
        run_cli("down", "--lab", LAB)


def test_the_sysbox_package_is_given() -> None:
    assert _deb().stat().st_size > 0, "FORTRESS_SYSBOX_DEB is an empty file"


def test_the_role_converges_with_the_package(host: SysboxHost) -> None:
    run = host.with_sysbox
    assert run.rc == 0, run.failure_text(HOST) or run.output[-3000:]
    assert "Install sysbox-ce" in run.changed.get(HOST, []), run.changed
    assert host.ssh("dpkg-query --show --showformat='${db:Status-Status}' sysbox-ce") == (
        "installed"
    )
    for unit in ("sysbox", "sysbox-mgr", "sysbox-fs"):
        assert host.ssh(f"systemctl is-active {unit}") == "active", unit
    assert host.ssh("systemctl is-enabled sysbox") == "enabled"


def test_a_second_converge_changes_nothing(host: SysboxHost) -> None:
    assert host.again.rc == 0, host.again.failure_text(HOST) or host.again.output[-3000:]
    assert host.again.changed_count(HOST) == 0, host.again.changed.get(HOST)


def test_the_installer_neither_rewrote_daemon_json_nor_restarted_docker(host: SysboxHost) -> None:
    text = host.ssh("cat /etc/docker/daemon.json")
    daemon = json.loads(text)
    assert daemon["runtimes"]["sysbox-runc"] == {"path": "/usr/bin/sysbox-runc"}
    # docker_engine's values, not the installer's 172.20.0.1/16 and 172.25.0.0/16.
    assert daemon["bip"] == "172.29.0.1/24"
    assert daemon["default-address-pools"] == [{"base": "172.30.0.0/16", "size": 24}]
    # The installer writes with jq --indent 4; docker_engine renders with an indent of 2.
    assert '\n  "runtimes": {' in text, text
    # Same dockerd as before Sysbox was turned on: reloaded for the runtime, never restarted.
    assert _dockerd_pid(host.port, host.key) == host.dockerd_pid_before


def test_docker_lists_the_sysbox_runtime(host: SysboxHost) -> None:
    runtimes = json.loads(host.ssh("docker info --format '{{json .Runtimes}}'"))
    assert "sysbox-runc" in runtimes, runtimes
    assert "runsc" in runtimes, runtimes  # gVisor is still registered beside it


def test_root_in_a_sysbox_container_is_not_root_on_the_host(host: SysboxHost) -> None:
    cid = host.ssh(
        "docker run -d --runtime sysbox-runc --network none fortress/smoke:busybox "
        "/bin/busybox sleep 300"
    )
    try:
        fmt = shlex.quote("{{.HostConfig.Runtime}} {{.State.Pid}}")
        runtime, pid = host.ssh(f"docker inspect --format {fmt} {cid}").split()
        assert runtime == "sysbox-runc"
        assert host.ssh(f"docker exec {cid} /bin/busybox id -u") == "0"
        inside, outside, count = host.ssh(f"head -n 1 /proc/{pid}/uid_map").split()
        assert inside == "0"
        assert int(outside) != 0, f"uid 0 in the container is uid {outside} on the host"
        assert int(count) >= 65536
        # The process the host sees runs as that unprivileged uid.
        assert host.ssh(f"stat --format=%u /proc/{pid}") == outside
    finally:
        host.ssh(f"docker rm -f {cid}")
