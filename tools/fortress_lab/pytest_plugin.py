"""pytest plugin with the `leak_check` fixture.

Enable it with `pytest_plugins = ["fortress_lab.pytest_plugin"]` in a conftest.py, then::

    def test_x(leak_check): ...  # checks this machine

    @pytest.mark.leak_check(target="fortress-lab-1", ignore=["veths"], settle=5)
    def test_y(leak_check): ...  # checks inside a lab host
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from .common import REPO_ROOT
from .leakcheck import Snapshot, no_leaks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leak_check(target=None, ignore=(), settle=10.0): options of the leak_check fixture",
    )


@pytest.fixture
def leak_check(request: pytest.FixtureRequest) -> Iterator[Snapshot]:
    """Snapshot before the test; after it (passed or failed), error in teardown listing leaks."""
    marker = request.node.get_closest_marker("leak_check")
    with no_leaks(**(marker.kwargs if marker else {})) as before:
        yield before


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
