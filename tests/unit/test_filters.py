from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_FILTERS = Path(__file__).resolve().parents[2] / "plugins" / "filter"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"fortress_filter_{name}", _FILTERS / f"{name}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


config = _load("changed_keys")
drop = _load("drop_none")


def test_changed_keys_added_removed_changed() -> None:
    old = {"a": 1, "b": 2, "gone": True}
    new = {"a": 1, "b": 3, "c": None}
    assert config.changed_keys(old, new) == ["b", "c", "gone"]


def test_changed_keys_nested_values_compare_whole() -> None:
    old = {"runtimes": {"runsc": {"path": "/usr/bin/runsc"}}}
    new = {"runtimes": {"runsc": {"path": "/usr/local/bin/runsc"}}}
    assert config.changed_keys(old, new) == ["runtimes"]
    assert config.changed_keys(new, new) == []


def test_changed_keys_reads_json_text_and_survives_garbage() -> None:
    assert config.changed_keys('{"icc": false}', {"icc": False}) == []
    assert config.changed_keys("not json {", {"icc": False}) == ["icc"]
    assert config.changed_keys("[1, 2]", {"icc": False}) == ["icc"]
    assert config.changed_keys(None, {}) == []


def test_drop_none_removes_only_null_values() -> None:
    assert drop.drop_none({"a": None, "b": False, "c": 0, "d": ""}) == {"b": False, "c": 0, "d": ""}


def test_pin_version_pins_only_listed_packages() -> None:
    pin = _load("pin_version").pin_version
    assert pin("docker-ce", ["docker-ce"], "5:27.3.1") == "docker-ce=5:27.3.1"
    assert pin("containerd.io", ["docker-ce"], "5:27.3.1") == "containerd.io"
    assert pin("docker-ce", ["docker-ce"], "") == "docker-ce"


def test_outer_seccomp_moves_refused_syscalls_out_of_every_rule_and_appends_ours() -> None:
    build = _load("outer_seccomp").outer_seccomp
    docker = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "socket", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["fsopen", "mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["X"]}},
            {"names": ["move_mount"], "action": "SCMP_ACT_ALLOW"},
        ],
    }
    # socket for every address family but AF_VSOCK (40), which the default action refuses.
    vsock = {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]}  # fmt: skip
    got = build(docker, ["pivot_root"], ["fsopen", "move_mount"])
    assert got["defaultAction"] == "SCMP_ACT_ERRNO"
    assert got["syscalls"] == [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["X"]}},
        {"names": ["fsopen", "move_mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        vsock,
        {"names": ["pivot_root"], "action": "SCMP_ACT_ALLOW"},
    ]
    assert docker["syscalls"][0]["names"] == ["read", "socket", "write"], "the input was modified"
    assert build(docker, [], [])["syscalls"] == [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        *docker["syscalls"][1:],
        vsock,
    ]
    with pytest.raises(ValueError, match="both allowed and refused"):
        build(docker, ["fsopen"], ["fsopen"])


missing = _load("missing_packages")
INSTALLED = {
    "nftables": [{"name": "nftables", "version": "1.0.6-2+deb12u2"}],
    "runsc": [{"name": "runsc", "version": "0.0~20240729.0-4~bpo12+2"}],
    "docker-ce": [{"name": "docker-ce", "version": "5:27.3.1-1~debian.12~bookworm"}],
}


def test_missing_packages_names_and_pins() -> None:
    wanted = [
        "nftables",
        "apparmor",  # not installed
        "runsc=0.0~20240729.0-4~bpo12+2",  # installed at the pin
        "docker-ce=5:28.0.0-1~debian.12~bookworm",  # installed, another version
    ]
    assert missing.missing_packages(wanted, INSTALLED) == [
        "apparmor",
        "docker-ce=5:28.0.0-1~debian.12~bookworm",
    ]
    assert missing.missing_packages(["runsc=0.0~2024*", "docker-ce=5:27.*"], INSTALLED) == []


def test_missing_packages_without_facts_reports_everything() -> None:
    # No package facts in this run (python3-apt missing, or a role run on its own): every
    # install task runs, as it did before the facts.
    assert missing.missing_packages(["nftables", "runsc=1"], None) == ["nftables", "runsc=1"]
    assert missing.missing_packages(["nftables"], {}) == ["nftables"]
