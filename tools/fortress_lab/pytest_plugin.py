"""pytest plugin with the `leak_check` and `vm_lab_host` fixtures.

Enable it with `pytest_plugins = ["fortress_lab.pytest_plugin"]` in a conftest.py, then::

    def test_x(leak_check): ...  # checks this machine

    @pytest.mark.leak_check(target="fortress-lab-1", ignore=["veths"], settle=5)
    def test_y(leak_check): ...  # checks inside a lab host

    def test_z(vm_lab_host): ...  # one VM lab host for the whole session, over SSH

    @pytest.mark.vm_lab_last
    def test_w(vm_lab_host): ...  # runs after every other test (for example: takes it down)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import vm
from .common import REPO_ROOT
from .leakcheck import Snapshot, no_leaks, snapshot

VM_LAB = "pytest-vm"
VM_HOST = "fortress-pytest-vm-1"
VM_PLATFORMS = json.dumps([{"name": VM_HOST, "image": "debian12", "options": {"restrict": True}}])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leak_check(target=None, ignore=(), settle=10.0): options of the leak_check fixture",
    )
    config.addinivalue_line(
        "markers", "vm_lab_last: run after every other test of the session (vm_lab_host users)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked vm_lab_last go to the end, in their order: the session's VM serves all
    others first."""
    last = [item for item in items if item.get_closest_marker("vm_lab_last")]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def inventory() -> str:
    """The inventory of a Molecule scenario's verify step (tests elsewhere define their own)."""
    path = os.environ.get("MOLECULE_INVENTORY_FILE")
    assert path, "run these tests through `molecule verify`: MOLECULE_INVENTORY_FILE is not set"
    return path


@pytest.fixture
def leak_check(request: pytest.FixtureRequest) -> Iterator[Snapshot]:
    """Snapshot before the test; after it (passed or failed), error in teardown listing leaks."""
    marker = request.node.get_closest_marker("leak_check")
    with no_leaks(**(marker.kwargs if marker else {})) as before:
        yield before


@contextmanager
def reaper_paused(sh: Callable[[str], Any]) -> Iterator[None]:
    """A lab host's reaper timer stopped, and a run of it in progress finished, for a test
    that races it (a sandbox with a 1 s TTL, a containerd leftover); started again after.
    `sh` runs a shell command on the lab host."""
    sh(
        'systemctl stop fortress-reap.timer; while [ "$(systemctl show -p ActiveState'
        ' --value fortress-reap.service)" = activating ]; do sleep 0.2; done'
    )
    try:
        yield
    finally:
        sh("systemctl start fortress-reap.timer")


def run_cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run `python -m fortress_lab ARGS` from the repository, as `make` does."""
    return subprocess.run(
        [sys.executable, "-m", "fortress_lab", *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "tools")},
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,  # `up` builds the images first when they are missing
        cwd=REPO_ROOT,
    )


def run_ansible(
    inventory: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `ansible -i INVENTORY all ARGS` from the repository, results as JSON."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "-i", str(inventory), "all", *args],
        env={**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


@dataclass(frozen=True)
class VmLabHost:
    """A running VM lab host: `ssh()` runs a command in it as root with the lab key;
    `inventory` is an Ansible inventory that reaches it over SSH."""

    lab: str
    name: str
    port: int
    key: Path
    inventory: Path
    before: Snapshot  # this machine before the VM was booted

    @property
    def directory(self) -> Path:
        return vm.host_dir(self.lab, self.name)

    def ssh(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            vm.ssh_argv(self.port, self.key, command),
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
        )

    def check(self, command: str, timeout: float = 300) -> str:
        """stdout of command (stripped); AssertionError with its output if it fails."""
        done = self.ssh(command, timeout)
        assert done.returncode == 0, f"{command!r} failed ({done.returncode}): {done.stderr}"
        return done.stdout.strip()


def start_vm_lab(lab: str, platforms_json: str, inventory: Path, host: str) -> dict[str, Any]:
    """Take down leftovers of lab `lab`, boot its VM lab hosts, write the inventory; return
    the inventory variables of `host` (its SSH port and key)."""
    done = run_cli("down", "--lab", lab)  # leftovers of an interrupted run
    assert done.returncode == 0, done.stderr
    done = run_cli(
        "up", "--kind", "vm", "--lab", lab, "--platforms-json", platforms_json,
        "--inventory", str(inventory),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    hosts = yaml.safe_load(inventory.read_text())["all"]["children"]["agent_hosts"]["hosts"]
    return hosts[host]


@pytest.fixture(scope="session")
def vm_lab_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmLabHost]:
    """One Debian 12 VM lab host for the whole session (booted once: about 30-60 s under
    software emulation), on QEMU's restricted network: nothing leaves the VM but the SSH
    forward. Taken down when the session ends."""
    before = snapshot()
    inventory = tmp_path_factory.mktemp("vm-lab") / "hosts.yml"
    hostvars = start_vm_lab(VM_LAB, VM_PLATFORMS, inventory, VM_HOST)
    try:
        yield VmLabHost(
            lab=VM_LAB,
            name=VM_HOST,
            port=int(hostvars["ansible_port"]),
            key=Path(hostvars["ansible_private_key_file"]),
            inventory=inventory,
            before=before,
        )
    finally:
        run_cli("down", "--lab", VM_LAB)
