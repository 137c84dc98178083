"""Filter: the packages of a list that package facts do not show installed as wanted."""

from __future__ import annotations

import fnmatch
from typing import Any

DOCUMENTATION = r"""
name: missing_packages
short_description: The packages of a list that are not installed as wanted, by the package facts
description:
  - Returns the items of the input (apt package names, each optionally pinned as
    C(NAME=VERSION), where VERSION may hold apt's C(*) wildcards) that O(installed) does not
    show installed, or not at a version matching the pin.
  - Where O(installed) is not known (no M(ansible.builtin.package_facts) in this run), every
    item counts as missing, so the caller's install task always runs.
  - The roles skip their package task when nothing is missing (one package_facts call per
    host and run instead of one apt call per role). Facts gathered earlier in the run can
    only over-report what is missing (no role removes packages), never hide a package to
    install.
positional: installed
options:
  _input:
    description: Package names, optionally C(NAME=VERSION).
    type: list
    elements: str
    required: true
  installed:
    description:
      - C(ansible_facts['packages']) as M(ansible.builtin.package_facts) sets it (name to a
        list of installed instances with their C(version)), or null when not gathered.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Install only when a package is missing
  ansible.builtin.apt:
    name: "{{ pkgs }}"
  when: pkgs | fortress.agents.missing_packages(installed) | length > 0
  vars:
    pkgs: [nftables, "runsc=0.0~20240729.0-4~bpo12+2"]
    installed: "{{ ansible_facts['packages'] | default(none) }}"
"""

RETURN = r"""
_value:
  description: The items of the input not installed as wanted, in their order.
  type: list
  elements: str
"""


def _installed_as_wanted(item: str, installed: dict[str, Any]) -> bool:
    name, version = [*item.split("=", 1), ""][:2]
    versions = [str(p.get("version", "")) for p in installed.get(name) or []]
    if not versions:
        return False
    return not version or any(fnmatch.fnmatchcase(v, version) for v in versions)


def missing_packages(packages: list[str], installed: dict[str, Any] | None) -> list[str]:
    if not isinstance(installed, dict):
        return list(packages)
    return [item for item in packages if not _installed_as_wanted(item, installed)]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"missing_packages": missing_packages}
