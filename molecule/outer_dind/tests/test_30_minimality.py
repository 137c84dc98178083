"""Minimality is tested, not claimed: a copy of the outer container with one documented
capability, or one syscall Fortress adds to Docker's default seccomp profile, taken away
cannot run the double sandbox (load a real image, run a task in gVisor through the sandbox
library). The control, an exact copy, can: so the probe is able to pass."""

from __future__ import annotations

import json

import pytest
from conftest import PLATFORM, ROLE_DEFAULTS

# The dind host; test_50_userns.py covers the userns one.
testinfra_hosts = [f"ansible://{PLATFORM}"]

# runsc needs these three to map ids into its gofer's user namespace on the VM lab host's
# kernel (6.1), not on this machine's (6.18): molecule/vm shows them needed there.
ON_THE_VM = {"SETUID", "SETGID", "SETFCAP"}
CASES = [("cap", c) for c in ROLE_DEFAULTS["outer_sandbox_capabilities"] if c not in ON_THE_VM]
CASES += [("syscall", s) for s in ROLE_DEFAULTS["outer_sandbox_seccomp_extra_syscalls"]]


def run_variant(host, script: str, kind: str, item: str = "") -> dict:
    out = host.check_output(f"python3 {script} fortress-outer-tenant-a {kind} {item}")
    return json.loads(out.splitlines()[-1])


@pytest.mark.leak_check(target=PLATFORM, settle=5)
def test_control_exact_copy_runs_the_double_sandbox(host, variant_script, leak_check) -> None:
    result = run_variant(host, variant_script, "none")
    assert result["ok"], result


@pytest.mark.parametrize(("kind", "item"), CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_without_it_the_double_sandbox_fails(host, variant_script, kind, item) -> None:
    result = run_variant(host, variant_script, kind, item)
    assert not result["ok"], f"the outer works without {kind} {item}: it is not needed ({result})"
