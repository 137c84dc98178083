"""The sysbox role's preflight and its contribution to daemon.json, run for real.

Each test runs ansible-playbook against localhost (connection local, no host change: only
asserts, stats, reads and set_fact) with the preflight entry point. The host properties the
preflight judges come from the role's internal variables (`__sysbox_kernel`,
`__sysbox_has_shiftfs`, ...), which default to the gathered facts; the tests set them as
extra vars to play hosts this machine is not. The sysbox-ce install itself is proven by
`make test-sysbox` (tests/sysbox), which needs the package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fortress_lab.playbook import PlaybookRun, run_playbook

# localhost runs modules with this interpreter (the controller's), not whatever it discovers.
LOCAL = {"ansible_python_interpreter": sys.executable}
SHA256 = "0123456789abcdef" * 4
DEB_URL = "https://downloads.example.org/sysbox-ce_0.6.7-0.linux_amd64.deb"
# A supported systemd host with a current kernel; each test changes what it is about.
GOOD_HOST: dict[str, Any] = {
    "sysbox_enabled": True,
    "sysbox_source": "url",
    "sysbox_deb_url": DEB_URL,
    "sysbox_deb_sha256": SHA256,
    "__sysbox_architecture": "x86_64",
    "__sysbox_kernel": "6.1.0-28-amd64",
    "__sysbox_has_shiftfs": False,
    "__sysbox_service_mgr": "systemd",
    "__sysbox_distribution": "Debian",
    "__sysbox_distribution_major": "12",
}
SHOW = "Show the contribution"
DAEMON = "Show the merged daemon.json"


def _play(tmp_path: Path, *, with_docker_engine: bool = False) -> Path:
    tasks: list[dict[str, Any]] = [
        {
            "name": "Preflight sysbox",
            "ansible.builtin.include_role": {
                "name": "fortress.agents.sysbox",
                "tasks_from": "preflight",
            },
        },
        {"name": SHOW, "ansible.builtin.debug": {"var": "sysbox_docker_engine_contribution"}},
    ]
    if with_docker_engine:
        tasks += [
            {
                "name": "Preflight docker_engine",
                "ansible.builtin.include_role": {
                    "name": "fortress.agents.docker_engine",
                    "tasks_from": "preflight",
                },
            },
            {"name": DAEMON, "ansible.builtin.debug": {"var": "__docker_engine_daemon"}},
        ]
    play = [
        {
            "name": "Sysbox preflight on this machine",
            "hosts": "localhost",
            "connection": "local",
            # docker_engine's preflight reads the distribution facts.
            "gather_facts": with_docker_engine,
            "gather_subset": ["!all", "min"],
            "tasks": tasks,
        }
    ]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return path


def _run(tmp_path: Path, *, with_docker_engine: bool = False, **overrides: Any) -> PlaybookRun:
    return run_playbook(
        "localhost,",
        playbook=_play(tmp_path, with_docker_engine=with_docker_engine),
        extra_vars={**LOCAL, **GOOD_HOST, **overrides},
        timeout=120,
    )


def _refused(run: PlaybookRun, *phrases: str) -> str:
    assert run.rc != 0, f"the preflight passed but should have failed:\n{run.output[-2000:]}"
    text = run.failure_text("localhost") or run.failure_text("*")
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in the failure:\n{text}"
    assert SHOW not in run.results, "a failed preflight still published its contribution"
    return text


def _contribution(run: PlaybookRun) -> dict[str, Any]:
    assert run.rc == 0, run.output[-3000:]
    return run.results[SHOW]["localhost"]["sysbox_docker_engine_contribution"]


EXPECTED = {
    "runtimes": {"sysbox-runc": {"path": "/usr/bin/sysbox-runc"}},
    "bip": "172.29.0.1/24",
    "default-address-pools": [{"base": "172.30.0.0/16", "size": 24}],
}


def test_good_input_passes_and_contributes_runtime_bip_and_pools(tmp_path: Path) -> None:
    assert _contribution(_run(tmp_path)) == EXPECTED


def test_contribution_defaults_equal_docker_engines_network_defaults() -> None:
    # The installer leaves Docker alone only if bip and pools are set; ours must not move
    # Docker's networks either, so they are docker_engine's own defaults.
    roles = Path(__file__).resolve().parents[2] / "roles"
    engine = yaml.safe_load((roles / "docker_engine/defaults/main.yml").read_text())
    daemon = engine["docker_engine_daemon_defaults"]
    assert EXPECTED["bip"] == daemon["bip"]
    assert EXPECTED["default-address-pools"] == daemon["default-address-pools"]


def test_docker_engine_merges_the_contribution(tmp_path: Path) -> None:
    pools = [{"base": "10.77.0.0/16", "size": 26}]
    run = _run(
        tmp_path,
        with_docker_engine=True,
        sysbox_docker_bip="10.66.0.1/24",
        sysbox_docker_default_address_pools=pools,
    )
    assert run.rc == 0, run.output[-3000:]
    daemon = run.results[DAEMON]["localhost"]["__docker_engine_daemon"]
    assert daemon["runtimes"]["sysbox-runc"] == {"path": "/usr/bin/sysbox-runc"}
    assert daemon["bip"] == "10.66.0.1/24"
    assert daemon["default-address-pools"] == pools
    assert daemon["icc"] is False  # the hardened defaults are still there


def test_disabled_by_default_is_a_no_op(tmp_path: Path) -> None:
    run = run_playbook("localhost,", playbook=_play(tmp_path), extra_vars=LOCAL, timeout=120)
    assert run.rc == 0, run.output[-3000:]
    shown = run.results[SHOW]["localhost"]["sysbox_docker_engine_contribution"]
    assert not isinstance(shown, dict), shown
    assert "undefined" in str(shown).lower(), shown


def test_refuses_an_old_kernel_without_shiftfs(tmp_path: Path) -> None:
    _refused(
        _run(tmp_path, __sysbox_kernel="5.10.0-28-amd64"),
        "kernel 5.10.0-28-amd64 without shiftfs",
        "upgrade the kernel",
    )


def test_accepts_an_old_kernel_with_shiftfs(tmp_path: Path) -> None:
    # The control for the test above: the same kernel passes once shiftfs is there.
    run = _run(tmp_path, __sysbox_kernel="5.10.0-28-amd64", __sysbox_has_shiftfs=True)
    assert _contribution(run) == EXPECTED


def test_accepts_5_12_without_shiftfs(tmp_path: Path) -> None:
    assert _contribution(_run(tmp_path, __sysbox_kernel="5.12.0")) == EXPECTED


def test_refuses_url_without_sha256(tmp_path: Path) -> None:
    _refused(_run(tmp_path, sysbox_deb_sha256=""), "not a 64-digit hex sha256")


@pytest.mark.parametrize("bad", [SHA256[:-1], SHA256[:-1] + "g", "sha256:" + SHA256])
def test_refuses_a_bad_sha256(tmp_path: Path, bad: str) -> None:
    _refused(_run(tmp_path, sysbox_deb_sha256=bad), f"sysbox_deb_sha256 is '{bad}'")


def test_refuses_url_source_without_url(tmp_path: Path) -> None:
    _refused(_run(tmp_path, sysbox_deb_url=""), "sysbox_deb_url is empty")


def test_refuses_a_missing_controller_path(tmp_path: Path) -> None:
    missing = tmp_path / "sysbox-ce_missing.deb"
    _refused(
        _run(tmp_path, sysbox_source="path", sysbox_deb_path=str(missing)),
        f"{missing} is not a file on the controller",
    )


def test_refuses_a_missing_host_path(tmp_path: Path) -> None:
    missing = tmp_path / "sysbox-ce_missing.deb"
    _refused(
        _run(
            tmp_path,
            sysbox_source="path",
            sysbox_deb_path=str(missing),
            sysbox_deb_remote_src=True,
        ),
        f"{missing} is not a file on localhost",
    )


@pytest.mark.parametrize("remote", [False, True])
def test_accepts_an_existing_path(tmp_path: Path, remote: bool) -> None:
    deb = tmp_path / "sysbox-ce_0.6.7-0.linux_amd64.deb"
    deb.write_bytes(b"!<arch>\n")
    run = _run(
        tmp_path,
        sysbox_source="path",
        sysbox_deb_path=str(deb),
        sysbox_deb_remote_src=remote,
        sysbox_deb_url="",
        sysbox_deb_sha256="",
    )
    assert _contribution(run) == EXPECTED


def test_refuses_an_unsupported_architecture(tmp_path: Path) -> None:
    _refused(_run(tmp_path, __sysbox_architecture="ppc64le"), "this host is ppc64le")


def test_refuses_a_host_without_systemd(tmp_path: Path) -> None:
    _refused(_run(tmp_path, __sysbox_service_mgr="sysvinit"), "service manager is sysvinit")


def test_refuses_an_unsupported_distribution(tmp_path: Path) -> None:
    _refused(_run(tmp_path, __sysbox_distribution_major="11"), "not Debian 11")


def test_argument_spec_refuses_an_unknown_source(tmp_path: Path) -> None:
    _refused(_run(tmp_path, sysbox_source="apt"), "sysbox_source", "apt")


GATE = "Check that daemon.json carries sysbox-runc, bip and default-address-pools"


def _gate(tmp_path: Path, daemon: dict[str, Any]) -> PlaybookRun:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(daemon))
    play = [
        {
            "name": "The daemon.json check that runs before the sysbox-ce installer",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Check Docker",
                    "ansible.builtin.include_role": {
                        "name": "fortress.agents.sysbox",
                        "tasks_from": "docker-ready",
                    },
                }
            ],
        }
    ]
    playbook = tmp_path / "gate.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    extra = {**LOCAL, **GOOD_HOST, "__sysbox_daemon_json_path": str(path)}
    return run_playbook("localhost,", playbook=playbook, extra_vars=extra, timeout=120)


@pytest.mark.parametrize("missing", ["runtimes", "bip", "default-address-pools"])
def test_install_refuses_a_daemon_json_the_installer_would_edit(
    tmp_path: Path, missing: str
) -> None:
    daemon = {k: v for k, v in EXPECTED.items() if k != missing}
    run = _gate(tmp_path, daemon)
    assert run.rc != 0, run.output[-2000:]
    assert "the sysbox-ce installer would rewrite it and restart Docker" in run.failure_text(
        "localhost"
    )


def test_install_accepts_a_daemon_json_with_the_contribution(tmp_path: Path) -> None:
    run = _gate(tmp_path, {**EXPECTED, "icc": False})
    result = run.results[GATE]["localhost"]
    assert not result.get("failed"), result
