"""Pure pieces of the outer_sandbox role: the rendered AppArmor profile compiles, the
instance expansion, and the seccomp profile is Docker's default plus exactly our rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from test_filters import _load as load_filter_module

from fortress_lab.common import contract

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "outer_sandbox"


def _filter(name: str):
    """A filter function of plugins/filter/<name>.py, loaded without Ansible's loader."""
    return getattr(load_filter_module(name), name)


outer_instances = _filter("outer_instances")
DEFAULTS = {"state": "started", "memory": "2g", "network": "fortress-outer-{name}"}


def _render(tmp_path: Path, template: str, **extra_vars: object) -> Path:
    """Render a role template with Ansible's own template module (as the role does)."""
    dest = tmp_path / template
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", json.dumps(extra_vars),
         "-m", "ansible.builtin.template",
         "-a", f"src={ROLE / 'templates' / template} dest={dest}"],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return dest


def test_apparmor_profile_compiles(tmp_path: Path) -> None:
    parser = shutil.which("apparmor_parser")
    assert parser, "apparmor_parser is missing: `make bootstrap` installs the apparmor package"
    profile = _render(tmp_path, "apparmor-outer.j2", outer_sandbox_apparmor_profile="fortress-t")
    text = profile.read_text()
    assert "profile fortress-t " in text
    for rule in ("audit deny mount fstype=cgroup,", "audit deny /**/release_agent w,",
                 "audit deny @{PROC}/sys/kernel/core_pattern w,"):  # fmt: skip
        assert rule in text
    done = subprocess.run([parser, "-Q", "-K", str(profile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # The check can fail: a broken rule is refused.
    broken = tmp_path / "broken"
    broken.write_text(text.replace("deny mount fstype=cgroup,", "deny mount fstype=cgroup"))
    assert subprocess.run([parser, "-Q", "-K", str(broken)], capture_output=True).returncode != 0


def test_instances_expand_names_and_defaults() -> None:
    got = outer_instances(
        [{"name": "team-a"}, {"name": "team-b", "memory": "1g", "network": None}],
        DEFAULTS, "/etc/fortress/outer/", "/run/fortress/outer",
    )  # fmt: skip
    assert got[0] == {
        "name": "team-a", "state": "started", "memory": "2g", "egress": None,
        "network": "fortress-outer-team-a", "container": "fortress-outer-team-a",
        "volume": "fortress-outer-team-a-docker", "config_dir": "/etc/fortress/outer/team-a",
        "socket_dir": "/run/fortress/outer/team-a",
        "socket": "/run/fortress/outer/team-a/docker.sock",
    }  # fmt: skip
    assert got[1]["memory"] == "1g" and got[1]["network"] is None


def test_tenants_on_one_egress_policy_get_networks_of_their_own() -> None:
    """Two instances on one policy each get the network the egress role makes for that tenant
    on it; an absent instance's own network (about to go) may be named again."""
    got = outer_instances(
        [{"name": "a", "egress": "llm"}, {"name": "b", "egress": "llm"},
         {"name": "c", "network": "n", "state": "absent"}, {"name": "d", "network": "n"}],
        DEFAULTS, "/etc/f", "/run/f",
    )  # fmt: skip
    prefix = contract().EGRESS_NETWORK_PREFIX
    assert [i["network"] for i in got] == [prefix + "llm.a", prefix + "llm.b", "n", "n"]


def test_an_instance_on_an_egress_policy_gets_the_policys_network() -> None:
    got = outer_instances([{"name": "a", "egress": "llm"}], DEFAULTS, "/etc/f", "/run/f")[0]
    assert (got["egress"], got["network"]) == ("llm", contract().EGRESS_NETWORK_PREFIX + "llm.a")
    with pytest.raises(
        AnsibleFilterError, match="instance 'a': egress 'No Such' is not an egress policy name"
    ):
        outer_instances([{"name": "a", "egress": "No Such"}], DEFAULTS, "/etc/f", "/run/f")


@pytest.mark.parametrize(
    ("items", "phrase"),
    [
        ([{"name": "Team A"}], "'Team A' is not a valid instance name"),
        ([{"name": "../x"}], "not a valid instance name"),
        ([{}], "None is not a valid instance name"),
        ([{"name": "a"}, {"name": "a"}], "'a' is used twice"),
        ([{"name": "a\n"}], "is not a valid instance name"),
        ([{"name": "a", "network": contract().EGRESS_NETWORK_PREFIX + "p.b"}], "like an egress"),
        (
            [{"name": "a", "network": "shared"}, {"name": "b", "network": "shared"}],
            "instances 'a' and 'b' both name network 'shared': give each its own",
        ),
    ],
)
def test_bad_instances_are_refused_in_one_sentence(items, phrase) -> None:
    with pytest.raises(AnsibleFilterError, match=phrase.replace("(", r"\(")):
        outer_instances(items, DEFAULTS, "/etc/fortress/outer", "/run/fortress/outer")


def test_vendored_seccomp_profile_is_dockers_default() -> None:
    profile = json.loads((ROLE / "files/seccomp-docker-default.json").read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               and not rule.get("includes") for n in rule["names"]}  # fmt: skip
    # What Docker's default denies and the outer must not get by default.
    assert not {"pivot_root", "keyctl", "init_module", "kexec_load", "open_by_handle_at"} & allowed
    assert {"read", "write", "openat", "execve"} <= allowed


def test_inner_runtimes_keep_the_hosts_flags_in_order_and_append_once() -> None:
    inner_runtimes = _filter("inner_runtimes")
    host = {
        "runsc-nonet": {"path": "/usr/local/bin/runsc", "runtimeArgs": ["--platform=systrap",
                                                                         "--network=none"]},
        "runsc": {"path": "/usr/local/bin/runsc", "runtimeArgs": ["--platform=systrap",
                                                                   "--ignore-cgroups",
                                                                   "--network=host"]},
    }  # fmt: skip
    got = inner_runtimes(host, "/usr/bin/runsc", ["--ignore-cgroups"])
    assert list(got) == ["runsc", "runsc-nonet"]
    assert got["runsc"] == {
        "path": "/usr/bin/runsc",
        "runtimeArgs": ["--platform=systrap", "--network=host", "--ignore-cgroups"],
    }
    # Same input, same output: the rendered daemon.json does not change between runs.
    assert inner_runtimes(host, "/usr/bin/runsc", ["--ignore-cgroups"]) == got
    assert inner_runtimes(host, "/usr/bin/runsc")["runsc-nonet"]["runtimeArgs"] == [
        "--platform=systrap",
        "--network=none",
    ]
