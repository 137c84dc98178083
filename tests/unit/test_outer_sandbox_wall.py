"""The outer_sandbox preflight's judgement of the second wall, run for real.

ansible-playbook against localhost (connection local; the preflight only asserts, reads and
sets facts) with the preflight entry point. What the host has (AppArmor in the kernel,
SELinux's mode, the cgroup version) comes from the role's internal variables, which default
to the gathered facts and stats; the tests set them as extra vars to play hosts this machine
is not (no lab host here runs SELinux).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from fortress_lab.playbook import PlaybookRun, run_playbook

LOCAL = {"ansible_python_interpreter": sys.executable}
# A dind host with gVisor's runtimes registered; each test says what stands in the way.
HOST: dict[str, Any] = {
    "outer_sandbox_enabled": True,
    "outer_sandbox_mode": "dind",
    "gvisor_docker_engine_contribution": {"runtimes": {"runsc": {"path": "/usr/bin/runsc"}}},
    "__outer_sandbox_cgroup_v2_found": True,
    "__outer_sandbox_apparmor": False,
    "outer_sandbox_acknowledge_no_second_wall": False,
}
PASSED = "The preflight passed"


def _run(tmp_path: Path, **overrides: Any) -> PlaybookRun:
    play = [
        {
            "name": "outer_sandbox preflight on this machine",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Preflight outer_sandbox",
                    "ansible.builtin.include_role": {
                        "name": "fortress.agents.outer_sandbox",
                        "tasks_from": "preflight",
                    },
                },
                {"name": PASSED, "ansible.builtin.debug": {"msg": "passed"}},
            ],
        }
    ]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return run_playbook(
        "localhost,", playbook=path, extra_vars={**LOCAL, **HOST, **overrides}, timeout=120
    )


def test_an_enforcing_selinux_is_not_a_second_wall(tmp_path: Path) -> None:
    """SELinux enforcing on the host, dind mode: the host daemon never labels the outer (no
    `selinux-enabled` in daemon.json; no lab host can prove a policy), so root in the outer
    is as unconfined as on a host without an LSM, and the preflight refuses in one sentence.
    Red control: with AppArmor in the kernel (the profile the role loads), it passes."""
    selinux = {"ansible_facts": {"selinux": {"status": "enabled", "mode": "enforcing"}}}
    refused = _run(tmp_path, **selinux)
    assert refused.rc != 0 and PASSED not in refused.results, refused.output[-2000:]
    text = refused.failure_text("localhost") or refused.failure_text("*")
    assert "Refusing to deploy the outer container in dind mode" in text, text
    assert "SELinux does not count" in text, text
    passed = _run(tmp_path, __outer_sandbox_apparmor=True, **selinux)
    assert passed.rc == 0 and PASSED in passed.results, passed.output[-3000:]


def test_dind_without_a_wall_is_refused_unless_acknowledged(tmp_path: Path) -> None:
    refused = _run(tmp_path)
    assert refused.rc != 0 and PASSED not in refused.results, refused.output[-2000:]
    passed = _run(tmp_path, outer_sandbox_acknowledge_no_second_wall=True)
    assert passed.rc == 0 and PASSED in passed.results, passed.output[-3000:]
