"""The adversarial suite (docs/threat-model.md): every probe, from inside a Fortress sandbox
as root and as its default non-root user, paired with a control that runs the same probe in
a deliberately weak container and must see the weakness.

Where: the shared lab host of this run (tests/conftest.py: a Debian 12 container lab host
converged by site.yml). Ours is the double sandbox: a sandbox made by the lifecycle library
through the outer container's socket, under runsc (network none: the runsc network mode is
irrelevant, there is no network). The control is a runc container on the lab host's own
dockerd with SYS_ADMIN, SYS_PTRACE, NET_ADMIN, MKNOD, no seccomp, /proc unmasked, the host's
PID namespace and the lab host's Docker socket mounted in.

A control that cannot go red on this kernel is accepted only with the evidence that says why
(the knob does not exist on this kernel, or no container on a container lab host can be given
CAP_SYSLOG); those controls run red on the VM lab host (molecule/vm).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fortress_lab import adversary as adv
from fortress_lab import leakcheck

HOST = "fortress-pytest-sandbox-1"  # tests/conftest.py: sandbox_lab
SCRIPT_PROBES = [p for p in adv.SCRIPT_PROBES if p != "kernel"]


@pytest.fixture(scope="module")
def host(sandbox_lab: Path) -> Iterator[adv.LabHost]:
    """The lab host; the whole suite must leave nothing behind in it."""
    with leakcheck.no_leaks(target=HOST, settle=20):
        yield adv.LabHost(HOST)


@pytest.fixture(scope="module")
def seen(host: adv.LabHost) -> dict[str, dict[str, tuple[str, str]]]:
    """The script's verdicts in each place, run once (each run takes about a second)."""
    runs = {
        "root": adv.run_sandboxed(host, "0:0"),
        "nobody": adv.run_sandboxed(host),
        "control": adv.run_weak(host),
    }
    parsed = {where: adv.parse(out) for where, out in runs.items()}
    print(json.dumps(parsed, indent=1))
    for where, verdicts in parsed.items():
        missing = set(adv.SCRIPT_PROBES) - set(verdicts)
        assert not missing, f"{where}: no verdict for {missing}:\n{runs[where]}"
    return parsed


def control_cannot_go_red(host: adv.LabHost, probe: str, verdict: tuple[str, str]) -> str:
    """The evidence that this kernel cannot show the weakness at all, or ''."""
    state, detail = verdict
    if state == adv.NA and "does not exist on this kernel" in detail:
        path = detail.split()[0]
        if host.sh(f"test -e {path} && echo present") == "":
            return f"{path} is absent from the lab host's kernel itself"
    if probe == "kallsyms":
        bounding = int(host.sh("grep CapBnd /proc/1/status").split()[-1], 16)
        paranoid = int(host.sh("cat /proc/sys/kernel/perf_event_paranoid"))
        if not bounding & (1 << 34) and paranoid > 1:
            return "kptr needs CAP_SYSLOG, which no container on a container lab host can get"
    return ""


def assert_ours_closed(seen: dict[str, Any], probe: str, user: str) -> None:
    state, detail = seen[user][probe]
    if state == adv.OPEN and adv.BY_NAME[probe].sentry:
        kernel = seen[user]["kernel"]
        assert kernel[0] == adv.CLOSED, f"{probe} open and the kernel is the host's: {kernel}"
        print(f"{probe} ({user}): open inside the Sentry only ({detail}; {kernel[1]})")
        return
    assert state in (adv.CLOSED, adv.NA), f"{probe} is open in our sandbox as {user}: {detail}"


@pytest.mark.parametrize("probe", SCRIPT_PROBES)
def test_probe(seen, host, probe: str) -> None:
    control = seen["control"][probe]
    if control[0] != adv.OPEN:
        evidence = control_cannot_go_red(host, probe, control)
        assert evidence, f"the control of {probe} did not go red: {control}"
        print(f"{probe}: control not applicable here: {evidence}")
    for user in ("root", "nobody"):
        if probe == "no_new_privs" and seen[user][probe][0] == adv.NA:
            assert adv.oci_no_new_privileges(host), "the sandbox's OCI spec lacks NoNewPrivs"
            continue
        assert_ours_closed(seen, probe, user)


def test_kernel(seen) -> None:
    assert seen["control"]["kernel"][0] == adv.OPEN, seen["control"]["kernel"]
    for user in ("root", "nobody"):
        assert seen[user]["kernel"][0] == adv.CLOSED, seen[user]["kernel"]


def test_runtime_identity(host) -> None:
    seen = adv.runtime_identity(host)
    assert seen["control"] == {"runtime": "runc", "sandbox_process": False}, seen
    assert seen["ours"] == {"runtime": "runsc", "sandbox_process": True}, seen


def test_cve_2024_21626_workdir(host) -> None:
    seen = adv.cve_2024_21626(host)
    assert seen["ours_refused"], seen
    # The lab host's runc is Debian's 1.1.5 with the fix backported: no red control here.
    assert "CVE-2024-21626" in seen["control_patched"], seen


@pytest.mark.parametrize("probe", list(adv.LOOK))
def test_sandbox_to_sandbox(host, probe: str) -> None:
    seen = sandbox_pairs(host)[probe]
    mark = adv.MARK[probe]
    assert mark in seen["control"], f"the control of {probe} did not go red: {seen}"
    assert mark in seen["ours_self"], f"the probe cannot even see its own sandbox: {seen}"
    assert mark not in seen["ours"], f"{probe}: one sandbox sees another's: {seen['ours']}"


_pairs: dict[str, Any] = {}


def sandbox_pairs(host: adv.LabHost) -> dict[str, Any]:
    if not _pairs:
        _pairs.update(adv.sandbox_pairs(host))
    return _pairs


def test_persistence(host) -> None:
    seen = adv.persistence(host)
    assert "fortress-persist" in seen["control"], seen
    assert "fortress-persist" not in seen["ours"], seen


@pytest.mark.parametrize("probe", [p for p in SCRIPT_PROBES if p in adv.OUTER_WITHOUT_LSM])
def test_outer_root(host, outer_seen, probe: str) -> None:
    """Second round, gVisor assumed escaped: root in the outer container on a lab host with
    no LSM. The outcomes are the documented ones (docs/threat-model.md): what DinD without
    AppArmor cannot close is what the acknowledgement variable, userns and Sysbox are for."""
    assert outer_seen[probe][0] == adv.OUTER_WITHOUT_LSM[probe], outer_seen[probe]


@pytest.fixture(scope="module")
def outer_seen(host: adv.LabHost) -> dict[str, tuple[str, str]]:
    out = adv.run_outer_root(host)
    print(out)
    return adv.parse(out)
