"""Filter: pin a package name to a version when the package is one that takes the pin."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: pin_version
short_description: Append C(=VERSION) to a package name when it is one of the pinned packages
description:
  - Returns C(NAME=VERSION) when O(version) is not empty and the package is in O(pinned),
    otherwise the name unchanged.
  - Used by the docker_engine role so that C(docker_engine_version) pins docker-ce and
    docker-ce-cli (or docker.io) but not containerd.io, whose versions differ.
positional: pinned, version
options:
  _input:
    description: Package name.
    type: str
    required: true
  pinned:
    description: Names of the packages that take the version.
    type: list
    elements: str
    required: true
  version:
    description: The version; empty means no pin.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Pin docker-ce only
  ansible.builtin.debug:
    # ['docker-ce=5:27.3.1-1~debian.12~bookworm', 'containerd.io']
    msg: "{{ pkgs | map('fortress.agents.pin_version', ['docker-ce'], v) }}"
  vars:
    pkgs: [docker-ce, containerd.io]
    v: 5:27.3.1-1~debian.12~bookworm
"""

RETURN = r"""
_value:
  description: The package name, pinned or not.
  type: str
"""


def pin_version(name: str, pinned: list[str], version: str) -> str:
    return f"{name}={version}" if version and name in pinned else name


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pin_version": pin_version}
