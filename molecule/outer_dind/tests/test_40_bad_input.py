"""Bad outer settings fail with one clear sentence before any change: the outer containers
keep running untouched. The refusal without a second wall is one of them."""

from __future__ import annotations

import pytest
from conftest import PLATFORM, TENANTS, inspect

from fortress_lab.playbook import assert_refused_before_any_change

# The dind host; test_50_userns.py covers the userns one.
testinfra_hosts = [f"ansible://{PLATFORM}"]

BAD_INPUT = {
    "no second wall and no acknowledgement": (
        {"outer_sandbox_acknowledge_no_second_wall": False},
        ["Refusing to deploy", "binfmt_misc", "outer_sandbox_acknowledge_no_second_wall"],
    ),
    "instance name with a space": (
        {"outer_sandbox_instances": [{"name": "Tenant A"}]},
        ["'Tenant A' is not a valid instance name"],
    ),
    "two instances with one name": (
        {"outer_sandbox_instances": [{"name": "a"}, {"name": "a"}]},
        ["'a' is used twice"],
    ),
    "archive source without an archive": (
        {"outer_sandbox_image_archive": ""},
        ["outer_sandbox_image_archive is empty"],
    ),
    "unknown mode": (
        {"outer_sandbox_mode": "privileged"},
        ["outer_sandbox_mode", "dind, userns, sysbox"],
    ),
    "sysbox mode without the sysbox role": (
        {"outer_sandbox_mode": "sysbox"},
        ["sysbox-runc", "sysbox_enabled"],
    ),
}


def _fingerprint(host) -> dict[str, object]:
    return {
        t: (inspect(host, t)["Id"], inspect(host, t)["State"]["StartedAt"]) for t in TENANTS
    } | {"files": host.run("ls -lR /etc/fortress/outer /run/fortress/outer").stdout}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_outer_input_fails_clearly_before_any_change(case, inventory, platform, host):
    extra_vars, phrases = BAD_INPUT[case]
    assert_refused_before_any_change(
        inventory, platform, extra_vars, phrases, lambda: _fingerprint(host), case
    )
