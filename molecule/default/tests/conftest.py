"""Shared fixtures of the default scenario's verify step (run by `molecule verify`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import testinfra
import yaml

pytest_plugins = ["fortress_lab.pytest_plugin"]

SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).resolve().parents[1]))
PLATFORMS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"]


@pytest.fixture(scope="session")
def debian12() -> str:
    """The Debian 12 platform: the host that drift and bad-input tests change."""
    return next(p["name"] for p in PLATFORMS if p["image"] == "debian12")


@pytest.fixture(scope="session")
def debian12_host(debian12: str) -> testinfra.host.Host:
    return testinfra.get_host(f"docker://{debian12}")
