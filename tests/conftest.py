"""Shared pytest setup: the lab tooling's fixtures, and the converged lab host that the
integration and security suites share (one converge per run).

That one converge is `make demo`'s main job (`fortress_lab demo`: site.yml through
ansible-runner, then playbooks/prove.yml), so tests/integration/test_demo.py reads its
output instead of converging a host of its own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fortress_lab.common import REPO_ROOT, collection_on_path
from fortress_lab.leakcheck import no_leaks
from fortress_lab.pytest_plugin import run_cli

pytest_plugins = ["fortress_lab.pytest_plugin"]
# Tests import the collection's code by its collection name, as Ansible does.
collection_on_path()

SANDBOX_LAB = "pytest-sandbox"
SANDBOX_HOST = "fortress-pytest-sandbox-1"


@dataclass(frozen=True)
class DemoLab:
    """The shared lab host's inventory and the output of the demo run that converged it."""

    inventory: Path
    first: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def demo_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoLab]:
    """One Debian 12 container lab host converged by `make demo`'s main job (host layer,
    outer layer, library, proof); removed at the end of the run."""
    workdir = tmp_path_factory.mktemp("sandbox-lab")
    # The lab's group_vars (distribution sources, runsc network mode) sit beside the file.
    (workdir / "group_vars").symlink_to(REPO_ROOT / "inventories/lab/group_vars")
    inv = workdir / "hosts.yml"
    # This machine is left as it was: no container, volume, network, mount or process of
    # the lab, the demo or any test on the host outlives the session.
    with no_leaks():
        up = run_cli(
            "up", "--lab", SANDBOX_LAB, "--count", "1", "--image-cycle", "debian12",
            "--inventory", str(inv),
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        try:
            first = run_cli("demo", "--inventory", str(inv))
            assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
            yield DemoLab(inv, first)
        finally:
            assert run_cli("down", "--lab", SANDBOX_LAB).returncode == 0


@pytest.fixture(scope="session")
def sandbox_lab(demo_lab: DemoLab) -> Path:
    """The converged shared lab host's inventory."""
    return demo_lab.inventory
