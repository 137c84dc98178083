"""The lab CLI's error handling: one sentence on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fortress_lab", *args],
        env={**os.environ, "PYTHONPATH": str(TOOLS), **env},
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )


def test_unreachable_engine_says_how_to_fix_it(tmp_path: Path) -> None:
    sock = f"unix://{tmp_path}/nothing.sock"
    done = _cli("status", "--lab", "pytest-nothing", DOCKER_HOST=sock)
    assert done.returncode == 2
    assert done.stderr == (
        f"fortress_lab: cannot reach the local Docker engine at {sock}: run `make bootstrap` "
        "(or `bash scripts/bootstrap.sh`) first.\n"
    )


def test_conflicting_options_are_refused_before_any_work() -> None:
    done = _cli("up", "--count", "1", "--platforms-json", "[]", DOCKER_HOST="unix:///nonexistent")
    assert done.returncode == 2
    assert "either --count or --platforms-json" in done.stderr
    assert "Traceback" not in done.stderr
