"""pytest plugin with the `leak_check` fixture.

Enable it with `pytest_plugins = ["fortress_lab.pytest_plugin"]` in a conftest.py, then::

    def test_x(leak_check): ...  # checks this machine

    @pytest.mark.leak_check(target="fortress-lab-1", ignore=["veths"], settle=5)
    def test_y(leak_check): ...  # checks inside a lab host
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
