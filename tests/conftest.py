"""Shared pytest setup: the lab tooling's fixtures, and the converged lab host that the
integration and security suites share (one converge per run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fortress_lab.common import REPO_ROOT
from fortress_lab.playbook import run_playbook
from fortress_lab.pytest_plugin import run_cli

pytest_plugins = ["fortress_lab.pytest_plugin"]

SANDBOX_LAB = "pytest-sandbox"
SANDBOX_HOST = "fortress-pytest-sandbox-1"


@pytest.fixture(scope="session")
def sandbox_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One Debian 12 container lab host converged by site.yml (host layer, outer layer,
    library); yields its inventory and removes it at the end of the run."""
    workdir = tmp_path_factory.mktemp("sandbox-lab")
    (workdir / "group_vars").symlink_to(REPO_ROOT / "inventories/lab/group_vars")
    inv = workdir / "hosts.yml"
    up = run_cli(
        "up", "--lab", SANDBOX_LAB, "--count", "1", "--image-cycle", "debian12",
        "--inventory", str(inv),
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    try:
        converge = run_playbook(inv)
        assert converge.rc == 0, converge.output[-3000:]
        yield inv
    finally:
        assert run_cli("down", "--lab", SANDBOX_LAB).returncode == 0
