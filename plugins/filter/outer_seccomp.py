"""Filter: the outer container's seccomp profile, from Docker's default."""

from __future__ import annotations

import copy
from typing import Any

DOCUMENTATION = r"""
name: outer_seccomp
short_description: The outer container's seccomp profile, built from Docker's default
description:
  - Takes Docker's default seccomp profile and returns it with the syscalls in O(enosys)
    taken out of every rule and answered with C(ENOSYS) instead, then one rule allowing
    O(allow).
  - Used by the outer_sandbox role. C(ENOSYS) for the new mount API (C(fsopen),
    C(fsmount), C(move_mount), ...) makes mount tools fall back to C(mount(2)), which
    AppArmor mediates; AppArmor on Linux 6.1 does not mediate the new API, so it would
    bypass the profile's mount rules. The role refuses C(bpf), C(perf_event_open) and
    C(io_uring_*) the same way.
  - C(socket) is allowed for every address family but C(AF_VSOCK) (40), which the profile's
    default action refuses (C(EPERM)), as Docker's own default profile has done since 23.0;
    vsock has no network namespaces, so an outer with no network would still reach the
    hypervisor, the machine's vsock services and, on a host that runs VMs, the VMs.
  - Rule order is kept, and the C(allow) rule is last, so the result is stable and the
    rules Fortress adds are easy to find.
positional: allow, enosys
options:
  _input:
    description: Docker's default seccomp profile (parsed JSON).
    type: dict
    required: true
  allow:
    description: Syscalls allowed on top of the profile.
    type: list
    elements: str
    default: []
  enosys:
    description: Syscalls refused with ENOSYS (errno 38), whatever the profile said.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: The outer's profile
  ansible.builtin.debug:
    msg: >-
      {{ lookup('ansible.builtin.file', 'seccomp-docker-default.json') | from_json
         | fortress.agents.outer_seccomp(['pivot_root'], ['fsopen', 'move_mount']) }}
"""

RETURN = r"""
_value:
  description: The seccomp profile, in Docker's JSON format.
  type: dict
"""

ENOSYS = 38
AF_VSOCK = 40
# socket(2) for any address family but AF_VSOCK; AF_VSOCK falls to the default action.
SOCKET_BUT_VSOCK = {
    "names": ["socket"],
    "action": "SCMP_ACT_ALLOW",
    "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}],
}


def outer_seccomp(
    profile: dict[str, Any], allow: list[str] | None = None, enosys: list[str] | None = None
) -> dict[str, Any]:
    """Docker's default profile with `enosys` answered ENOSYS, socket(AF_VSOCK) refused and
    `allow` allowed (last)."""
    refused = list(enosys or [])
    if overlap := set(refused) & set(allow or []):
        raise ValueError(f"syscalls both allowed and refused: {sorted(overlap)}")
    result = copy.deepcopy(profile)
    rules = []
    for rule in result.get("syscalls", []):
        # An unconditional allow of socket would allow AF_VSOCK too: SOCKET_BUT_VSOCK instead.
        unconditional = rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args")
        names = [
            n for n in rule.get("names", [])
            if n not in refused and not (unconditional and n == "socket")
        ]  # fmt: skip
        if names:
            rules.append({**rule, "names": names})
    if refused:
        rules.append({"names": refused, "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    rules.append(copy.deepcopy(SOCKET_BUT_VSOCK))
    if allow:
        rules.append({"names": list(allow), "action": "SCMP_ACT_ALLOW"})
    result["syscalls"] = rules
    return result


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"outer_seccomp": outer_seccomp}
