"""The adversarial probes on a VM lab host (Debian 12, kernel 6.1, AppArmor enforcing, cgroup
v2), where the controls the CI machine's kernel cannot turn red do go red (docs/threat-model.md),
and the second round, root in the outer container, runs under the enforced fortress-outer
AppArmor profile. Same implementation as tests/security (tools/fortress_lab/adversary.py):
ours is a sandbox the library installed on the VM makes through the outer's socket (gVisor's
own network stack here, though network none leaves it nothing to do); the control is a runc
container on the VM's dockerd, weak as on container lab hosts plus SYS_RAWIO and SYSLOG (for
/proc/kcore and kallsyms), which this kernel lets a container have."""

from __future__ import annotations

import json

import pytest

from fortress_lab import adversary as adv

RED_HERE_ONLY = ("modprobe", "kcore", "sysrq_trigger", "kallsyms")


@pytest.fixture(scope="module")
def seen(host) -> dict[str, dict[str, tuple[str, str]]]:
    vm = adv.RemoteHost(host)
    runs = {
        "root": adv.run_sandboxed(vm, "0:0"),
        "nobody": adv.run_sandboxed(vm),
        "control": adv.run_weak(vm, "--cap-add=SYS_RAWIO", "--cap-add=SYSLOG"),
        "outer": adv.run_outer_root(vm),
    }
    parsed = {where: adv.parse(out) for where, out in runs.items()}
    print(json.dumps(parsed, indent=1))
    for where, verdicts in parsed.items():
        assert set(adv.SCRIPT_PROBES) <= set(verdicts), f"{where}:\n{runs[where]}"
    return parsed


@pytest.mark.parametrize("probe", RED_HERE_ONLY)
def test_the_control_goes_red_here_and_ours_stays_green(seen, probe: str) -> None:
    assert seen["control"][probe][0] == adv.OPEN, seen["control"][probe]
    for user in ("root", "nobody"):
        state, detail = seen[user][probe]
        if state == adv.OPEN:
            assert adv.BY_NAME[probe].sentry, f"{probe} open in our sandbox as {user}: {detail}"
            assert seen[user]["kernel"][0] == adv.CLOSED, seen[user]["kernel"]
        else:
            assert state in (adv.CLOSED, adv.NA), (user, state, detail)


def test_uevent_helper_is_absent_from_this_kernel_too(host, seen) -> None:
    """No red control anywhere here: Debian 12's kernel has no uevent_helper either
    (CONFIG_UEVENT_HELPER unset), so the probe cannot find one to open."""
    assert seen["control"]["uevent_helper"][0] == adv.NA
    assert not host.file("/sys/kernel/uevent_helper").exists
    for user in ("root", "nobody"):
        assert seen[user]["uevent_helper"][0] in (adv.CLOSED, adv.NA)


@pytest.mark.parametrize("probe", sorted(adv.OUTER_WITH_APPARMOR))
def test_outer_root_under_the_enforced_profile(seen, probe: str) -> None:
    """Root in the outer container with fortress-outer enforced: what the profile closes
    that DinD without an LSM leaves open (tests/security/test_probes.py::test_outer_root)."""
    assert seen["outer"][probe][0] == adv.OUTER_WITH_APPARMOR[probe], seen["outer"][probe]
