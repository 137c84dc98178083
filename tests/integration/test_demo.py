"""`make demo`'s main job, end to end on the session's shared lab host (one Debian 12 host,
tests/conftest.py): converge site.yml (host and outer layer) through ansible-runner, prove
the double sandbox on the host (a gVisor sandbox through the outer container's socket), print
the table; a second run converges with changed=0. That first run is the converge every
integration and security test shares; `make lab-down` leaving nothing behind is proven in
tests/integration/test_lab.py."""

from __future__ import annotations

import re

import yaml
from conftest import SANDBOX_HOST as HOST
from conftest import DemoLab

from fortress_lab.common import REPO_ROOT
from fortress_lab.pytest_plugin import run_cli as cli

CAPS = len(
    yaml.safe_load((REPO_ROOT / "roles/outer_sandbox/defaults/main.yml").read_text())[
        "outer_sandbox_capabilities"
    ]
)
OUTER = f"fortress-outer-default[runc,{CAPS}]"


def table_row(output: str) -> list[str]:
    rows = [line.split() for line in output.splitlines() if line.startswith(HOST)]
    assert rows, f"no summary row for {HOST}:\n{output[-3000:]}"
    return rows[-1]


def test_demo_converges_proves_gvisor_and_is_idempotent(demo_lab: DemoLab) -> None:
    first = demo_lab.first
    _host, _ok, changed, failed, outer, wall, runtime, in_gvisor, inner, kernel, cold = table_row(
        first.stdout
    )
    assert int(changed) > 0 and failed == "0"
    # The task went through the outer container, under runc with the documented capabilities;
    # on this kernel (no AppArmor) and in dind mode, nothing stands between its root and the
    # host's: the table says so (the lab acknowledges it; userns shows "userns":
    # molecule/outer_dind/tests/test_50_userns.py).
    assert outer == OUTER, outer
    assert wall == "none", wall
    assert (runtime, in_gvisor) == ("runsc", "yes")
    assert inner != kernel  # gVisor's Sentry answered uname, not the host kernel
    assert float(cold) > 0
    assert re.search(rf"{HOST}\s+changed\s", first.stdout), "no per-host progress lines"

    second = cli("demo", "--inventory", str(demo_lab.inventory))
    assert second.returncode == 0, second.stdout[-4000:]
    row = table_row(second.stdout)
    assert row[2] == "0", f"second converge changed {row[2]} tasks:\n{second.stdout[-3000:]}"
    assert row[4:8] == [OUTER, "none", "runsc", "yes"]
