"""The bootstrap refuses what it cannot serve with one sentence and a non-zero exit,
before it changes anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BOOTSTRAP = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap.sh"


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_not_root_is_refused() -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run as another user"
    done = run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(BOOTSTRAP)]
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "[bootstrap] ERROR: must run as root (it installs packages and starts dockerd): "
        "run it again with sudo."
    )


def test_not_debian_or_ubuntu_is_refused(tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=fedora\nPRETTY_NAME="Fedora Linux 41"\n')
    done = run(["bash", str(BOOTSTRAP)], FORTRESS_OS_RELEASE=str(os_release))
    assert done.returncode == 1
    assert "this is Fedora Linux 41; the bootstrap supports Debian and Ubuntu only" in done.stderr
    assert done.stdout == ""  # refused before doing anything
