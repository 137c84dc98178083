"""The lab itself, against the machine's real dockerd and the real lab images.

One systemd lab host is booted for the whole module. These tests never skip: without a
reachable Docker engine they fail (`make test` starts dockerd first). With pytest-xdist,
keep this module on one worker (`--dist loadfile`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import docker.errors
import pytest
import yaml
from docker.models.containers import Container

from fortress_lab import fleet, leakcheck
from fortress_lab.common import LabError, client
from fortress_lab.pytest_plugin import run_ansible
from fortress_lab.pytest_plugin import run_cli as cli

pytestmark = pytest.mark.lab

LAB = "pytest-lab"
HOST = "fortress-pytest-lab-1"
CAP_SYS_ADMIN = 21


def sh(container: Container, command: str) -> str:
    done = container.exec_run(["sh", "-c", command])
    output = cast(bytes, done.output).decode().strip()
    assert done.exit_code == 0, output
    return output


@dataclass
class Lab:
    before: leakcheck.Snapshot
    inventory: Path
    container: Container


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    done = cli("down", "--lab", LAB)  # leftovers of an interrupted run
    assert done.returncode == 0, done.stderr
    before = leakcheck.snapshot()
    inventory = tmp_path_factory.mktemp("lab") / "hosts.yml"
    done = cli("up", "--lab", LAB, "--count", "1", "--inventory", str(inventory))
    assert done.returncode == 0, done.stderr
    yield Lab(before, inventory, client().containers.get(HOST))
    cli("down", "--lab", LAB)


def test_host_boots_systemd(lab: Lab) -> None:
    assert sh(lab.container, "systemctl is-system-running || true") in ("running", "degraded")
    assert sh(lab.container, "hostname") == HOST
    assert sh(lab.container, "python3 -c 'import sys; print(sys.version_info[0])'") == "3"


def test_docker_dir_is_a_volume(lab: Lab) -> None:
    mounts = {m["Destination"]: m for m in lab.container.attrs["Mounts"]}
    assert mounts["/var/lib/docker"]["Type"] == "volume"
    assert mounts["/var/lib/docker"]["Name"] == f"{HOST}-docker"
    volume = client().volumes.get(f"{HOST}-docker")
    assert volume.attrs["Labels"]["io.fortress.lab"] == LAB


def test_capabilities_without_privileged(lab: Lab) -> None:
    status = sh(lab.container, "cat /proc/1/status")
    cap_eff = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapEff")), 16)
    assert cap_eff & (1 << CAP_SYS_ADMIN)
    host_config = lab.container.attrs["HostConfig"]
    assert host_config["Privileged"] is False
    assert sorted(c.removeprefix("CAP_") for c in host_config["CapAdd"]) == [
        "NET_ADMIN",
        "SYS_ADMIN",
        "SYS_PTRACE",
    ]
    assert host_config["SecurityOpt"] == ["seccomp=unconfined"]
    assert host_config["CgroupnsMode"] == "host"


def test_labels_status_and_inventory(lab: Lab) -> None:
    labels = lab.container.labels
    assert (labels["io.fortress.lab"], labels["io.fortress.lab.image"]) == (LAB, "debian12")
    assert [(h.name, h.state) for h in fleet.status(LAB)] == [(HOST, "running")]
    hosts = yaml.safe_load(lab.inventory.read_text())["all"]["children"]["agent_hosts"]["hosts"]
    assert hosts[HOST]["ansible_connection"] == "community.docker.docker"
    assert hosts[HOST]["fortress_lab_image"] == "debian12"


def test_up_again_keeps_the_running_host(lab: Lab) -> None:
    done = cli("up", "--lab", LAB, "--count", "1", "--inventory", str(lab.inventory))
    assert done.returncode == 0, done.stderr
    assert client().containers.get(HOST).id == lab.container.id


def test_ansible_reaches_the_host(lab: Lab) -> None:
    done = run_ansible(lab.inventory, "-m", "setup", "-a", "filter=ansible_distribution*")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ansible_distribution": "Debian"' in done.stdout


def test_bad_image_key_is_a_clear_error_and_leaves_nothing(lab: Lab) -> None:
    platforms = '[{"name": "fortress-pytest-bad-1", "image": "debian99"}]'
    with leakcheck.no_leaks(settle=0):
        done = cli("up", "--lab", "pytest-bad", "--platforms-json", platforms)
    assert done.returncode == 2
    assert done.stderr.startswith("fortress_lab: unknown image key 'debian99'")
    assert len(done.stderr.splitlines()) == 1


def test_failed_host_is_rolled_back(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: fleet.ContainerBackend, container: Container) -> None:
        raise LabError(f"{container.name} failed on purpose")

    monkeypatch.setattr(fleet.ContainerBackend, "_wait_running", fail)
    spec = fleet.HostSpec("fortress-pytest-rollback-1", "debian12")
    with leakcheck.no_leaks():
        with pytest.raises(LabError, match="failed on purpose"):
            fleet.up("pytest-rollback", [spec])
    with pytest.raises(docker.errors.NotFound):
        client().containers.get(spec.name)


def test_down_leaves_nothing(lab: Lab) -> None:
    for _attempt in range(2):  # idempotent
        done = cli("down", "--lab", LAB)
        assert done.returncode == 0, done.stderr
    assert leakcheck.leaks_since(lab.before) == {}
    assert fleet.status(LAB) == []
