"""`make demo`'s main job, end to end on a scratch lab of one Debian 12 host: converge
site.yml (host and outer layer) through ansible-runner, prove the double sandbox on the host
(a gVisor sandbox through the outer container's socket), print the table; a second run
converges with changed=0. The machine is left as it was (leak check)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from fortress_lab.common import REPO_ROOT
from fortress_lab.pytest_plugin import run_cli as cli

CAPS = len(
    yaml.safe_load((REPO_ROOT / "roles/outer_sandbox/defaults/main.yml").read_text())[
        "outer_sandbox_capabilities"
    ]
)
OUTER = f"fortress-outer-default[runc,{CAPS}]"
LAB = "pytest-demo"
HOST = "fortress-pytest-demo-1"


def table_row(output: str) -> list[str]:
    rows = [line.split() for line in output.splitlines() if line.startswith(HOST)]
    assert rows, f"no summary row for {HOST}:\n{output[-3000:]}"
    return rows[-1]


def test_demo_converges_proves_gvisor_and_is_idempotent(leak_check, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    # The lab's group_vars (distribution sources, runsc network mode) sit beside the file.
    (tmp_path / "group_vars").symlink_to(REPO_ROOT / "inventories/lab/group_vars")
    try:
        up = cli("up", "--lab", LAB, "--count", "1", "--inventory", str(inventory))
        assert up.returncode == 0, up.stderr

        first = cli("demo", "--inventory", str(inventory))
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        _host, _ok, changed, failed, outer, runtime, in_gvisor, inner, kernel, cold = table_row(
            first.stdout
        )
        assert int(changed) > 0 and failed == "0"
        # The task went through the outer container, under runc with the documented capabilities.
        assert outer == OUTER, outer
        assert (runtime, in_gvisor) == ("runsc", "yes")
        assert inner != kernel  # gVisor's Sentry answered uname, not the host kernel
        assert float(cold) > 0
        assert re.search(rf"{HOST}\s+changed\s", first.stdout), "no per-host progress lines"

        second = cli("demo", "--inventory", str(inventory))
        assert second.returncode == 0, second.stdout[-4000:]
        row = table_row(second.stdout)
        assert row[2] == "0", f"second converge changed {row[2]} tasks:\n{second.stdout[-3000:]}"
        assert row[4:7] == [OUTER, "runsc", "yes"]
    finally:
        down = cli("down", "--lab", LAB)
        assert down.returncode == 0, down.stderr
