"""Fixtures of the outer_dind scenario's verify step (run by `molecule verify`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["fortress_lab.pytest_plugin"]

REPO = Path(__file__).resolve().parents[3]
SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).resolve().parents[1]))
PLATFORM = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"][0]["name"]
ROLE_DEFAULTS = yaml.safe_load((REPO / "roles/outer_sandbox/defaults/main.yml").read_text())
HOST_VARS = yaml.safe_load((SCENARIO / "host_vars" / f"{PLATFORM}.yml").read_text())
TENANTS = [i["name"] for i in HOST_VARS["outer_sandbox_instances"]]
# tenant-c is tenant-a's neighbour on the egress policy, looked for by one attack test; the
# per-tenant checks cover one outer of each kind (on a policy, without one).
NEIGHBOUR = "tenant-c"
VARIANT = REPO / "tools/fortress_lab/files/outer-variant.py"
USERNS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"][1]["name"]


@pytest.fixture(scope="session")
def platform() -> str:
    return PLATFORM


@pytest.fixture(params=[t for t in TENANTS if t != NEIGHBOUR])
def tenant(request) -> str:
    return request.param


def inspect(host, tenant: str) -> dict:
    return json.loads(host.check_output(f"docker inspect fortress-outer-{tenant}"))[0]


def socket(tenant: str) -> str:
    return f"/run/fortress/outer/{tenant}/docker.sock"


def inner(tenant: str) -> str:
    """The docker CLI pointed at a tenant's inner daemon through its host-side socket."""
    return f"docker -H unix://{socket(tenant)}"


@pytest.fixture(scope="session")
def variant_script(platform: str) -> str:
    """The minimality probe, copied into the lab host (a container on this machine)."""
    subprocess.run(["docker", "cp", str(VARIANT), f"{platform}:/root/outer-variant.py"], check=True)
    return "/root/outer-variant.py"
