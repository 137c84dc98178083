#!/usr/bin/python
# Copyright: Fortress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: create, start, stop or remove an agent sandbox (gVisor)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sandbox
short_description: Manage an agent sandbox, a gVisor container with safe defaults
version_added: 0.1.0
description:
  - Creates, starts, stops or removes a sandbox on the managed host's Docker daemon.
  - Defaults are the safe ones - runtime runsc (nothing else is accepted), all capabilities
    dropped, no-new-privileges, read-only root filesystem with a size-bound tmpfs on C(/tmp),
    user C(65534:65534), no network, cpu/memory/pids limits, an owner and a TTL in labels.
  - The same spec twice changes nothing; a changed spec recreates the sandbox (with a diff).
extends_documentation_fragment:
  - fortress.agents.sandbox
attributes:
  check_mode:
    support: full
    description: Reports what would change without touching the daemon.
  diff_mode:
    support: full
    description: Shows the sandbox's image, spec fingerprint and state before and after.
  idempotent:
    support: full
    description: The same spec twice reports no change.
options:
  name:
    description: Name of the sandbox (its container name).
    type: str
    required: true
  state:
    description:
      - C(started) creates it if needed and runs it; C(present) creates it without starting;
        C(stopped) stops an existing sandbox; C(absent) removes it.
    type: str
    choices: [present, started, stopped, absent]
    default: started
  image:
    description:
      - Image, by tag or pinned by digest (C(name@sha256:...)).
      - Required for O(state=started) and O(state=present).
    type: str
  command:
    description:
      - Command of the sandbox's first process (argv list); without it, the image's entrypoint
        and command.
      - It runs under Fortress's init (PID 1, mounted read-only from the host or the outer),
        which starts it only after the module proved from the host that the sandbox runs
        under gVisor, forwards signals to it and stops the sandbox when it exits.
    type: list
    elements: str
  env:
    description: Environment. Values are never logged; prefer files on a tmpfs for secrets.
    type: dict
    default: {}
  workdir:
    description:
      - Working directory, an absolute path.
      - Refused under C(/proc), C(/sys) and C(/dev), where a working directory can reach
        outside the sandbox (CVE-2024-21626).
    type: str
  user:
    description: User (and group) the processes run as.
    type: str
    default: "65534:65534"
  cpus:
    description: CPU limit.
    type: float
    default: 1.0
  memory:
    description: Memory limit (also the swap limit), like C(512m) or C(1g).
    type: str
    default: 512m
  pids:
    description: Maximum number of processes.
    type: int
    default: 256
  tmpfs_size:
    description: Size of the tmpfs on C(/tmp).
    type: str
    default: 64m
  read_only:
    description: Read-only root filesystem.
    type: bool
    default: true
  network:
    description:
      - C(none) (no network, only loopback) or the name of an egress policy.
      - A policy is available only through an outer container on that policy's network
        (C(egress) in C(outer_sandbox_instances); the egress role creates the network, its
        proxy and its nftables rules). Its inner daemon carries the labels
        C(io.fortress.egress.policy), C(io.fortress.egress.proxy) and
        C(io.fortress.egress.runtime); elsewhere the module refuses.
      - The sandbox then shares the outer's network namespace (Docker network mode C(host))
        under the outer's egress runtime (runsc C(--network=host), whatever O(runtime) says),
        and gets C(HTTP_PROXY), C(HTTPS_PROXY) (and lower-case) set to the policy's proxy, which
        allows only the hosts and addresses the policy lists. It has no DNS resolver that
        answers; names are resolved by the proxy. Sandboxes of one outer on a policy share its
        network stack (loopback included), so give tenants separate outers.
    type: str
    default: none
  owner:
    description: Owner label, for listing and auditing.
    type: str
    default: unknown
  ttl:
    description:
      - Seconds after creation when fortress.agents.sandbox_reap destroys it.
      - At most O(max_ttl); a longer one is refused.
    type: int
    default: 3600
  labels:
    description:
      - Extra labels. Keys starting with C(io.fortress.) are the library's and refused.
    type: dict
    default: {}
  mounts:
    description:
      - Bind mounts, only from below O(workspace_root), reached with no symlink at any
        component; never a socket or a file with a second hard link.
      - Docker never gets the name that was checked. The module bind-mounts the checked
        directory or file onto a root-only path under C(/run/fortress/mounts) and gives
        Docker that path, so a symlink swapped in afterwards changes nothing. The staged
        mount is released when the sandbox is removed. After a reboot, a stopped sandbox with
        mounts is refused at start (its staged mounts are gone); remove it and create it again.
      - Refused through an outer container's socket (O(docker_socket) of a daemon in
        another mount namespace), whose daemon would resolve the path inside the outer.
        Use M(fortress.agents.sandbox_copy) there.
    type: list
    elements: dict
    default: []
    suboptions:
      source:
        description: Path on the managed host, below O(workspace_root).
        type: path
        required: true
      target:
        description: Path in the sandbox (not a system path).
        type: str
        required: true
      read_only:
        description: Mount read-only.
        type: bool
        default: true
  runtime:
    description:
      - A runsc runtime of the daemon (for example C(runsc) or C(runsc-nonet)).
      - Checked before the sandbox is created. The daemon's runtime must run a binary named
        C(runsc) with only flags of the sandbox contract's allowlist (C(--platform),
        C(--network), C(--overlay2), C(--host-uds=none), C(--ignore-cgroups)); a debug or
        strace runtime, C(--host-uds=all) or C(--net-raw) is refused with one sentence.
    type: str
    default: runsc
author:
  - Fortress developers (@fortress)
"""

EXAMPLES = r"""
- name: A sandbox for agent session 42, no network, one hour
  fortress.agents.sandbox:
    name: agent-42
    image: fortress/smoke:busybox
    command: [/bin/sh, -c, "sleep infinity"]
    owner: agent-42
    ttl: 3600

- name: On the host's daemon, with a writable workspace
  fortress.agents.sandbox:
    name: build-7
    image: registry.example/agent@sha256:0123...
    mounts:
      - source: /var/lib/fortress/workspaces/build-7
        target: /workspace
        read_only: false

- name: Through an outer container's host-side socket (files go in by sandbox_copy)
  fortress.agents.sandbox:
    name: build-8
    image: registry.example/agent@sha256:0123...
    docker_socket: /run/fortress/outer/tenant-a/docker.sock

- name: Remove it
  fortress.agents.sandbox:
    name: agent-42
    state: absent
"""

RETURN = r"""
sandbox:
  description: The sandbox after the change (empty when absent).
  returned: always
  type: dict
  contains:
    name:
      description: Container name.
      type: str
    id:
      description: Container ID.
      type: str
    status:
      description: Docker's status (running, created, exited).
      type: str
    runtime:
      description: The runtime Docker recorded.
      type: str
    fingerprint:
      description:
        - Keyed hash of the spec (the idempotence key), under the host's O(fingerprint_key).
          Env values enter it only through that key, so the label (readable by anyone who
          can list containers) does not let a secret be guessed offline.
      type: str
"""

from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    LABEL_IMAGE,
    LABEL_SPEC,
    Mount,
    SandboxSpec,
)
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.module import run_module

SPEC_ARGS = {
    "image": {"type": "str"},
    "command": {"type": "list", "elements": "str"},
    "env": {"type": "dict", "default": {}, "no_log": True},
    "workdir": {"type": "str"},
    "user": {"type": "str", "default": "65534:65534"},
    "cpus": {"type": "float", "default": 1.0},
    "memory": {"type": "str", "default": "512m"},
    "pids": {"type": "int", "default": 256},
    "tmpfs_size": {"type": "str", "default": "64m"},
    "read_only": {"type": "bool", "default": True},
    "network": {"type": "str", "default": "none"},
    "owner": {"type": "str", "default": "unknown"},
    "ttl": {"type": "int", "default": 3600},
    "labels": {"type": "dict", "default": {}},
    "mounts": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "source": {"type": "path", "required": True},
            "target": {"type": "str", "required": True},
            "read_only": {"type": "bool", "default": True},
        },
    },
    "runtime": {"type": "str", "default": "runsc"},
}


def spec_from_params(params: dict, name: str | None) -> SandboxSpec:
    return SandboxSpec(
        name=name,
        mounts=[Mount(**m) for m in params["mounts"]],
        **{k: params[k] for k in SPEC_ARGS if k != "mounts"},
    )


def describe(container) -> dict:
    if container is None:
        return {}
    return {
        "name": container.name,
        "id": container.id,
        "status": container.status,
        "runtime": container.attrs["HostConfig"].get("Runtime", ""),
        "fingerprint": container.labels.get(LABEL_SPEC, ""),
    }


def converge(module, boxes) -> dict:
    name, state = module.params["name"], module.params["state"]
    current = boxes.get(name)
    before = {"state": "absent"} if current is None else {
        "state": current.status, "image": current.labels.get(LABEL_IMAGE, ""),
        "fingerprint": current.labels.get(LABEL_SPEC, ""),
    }  # fmt: skip
    if state == "absent":
        changed = current is not None
        if changed and not module.check_mode:
            boxes.remove(name)
        return {"changed": changed, "sandbox": {},
                "diff": {"before": before, "after": {"state": "absent"}}}  # fmt: skip
    if state == "stopped":
        if current is None:
            module.fail_json(msg=f"no sandbox named {name} to stop: create it first.")
        changed = current.status == "running"
        if changed and not module.check_mode:
            current.stop()
            current.reload()
        after = {**before, "state": "exited"} if changed else before
        return {"changed": changed, "sandbox": describe(current),
                "diff": {"before": before, "after": after}}  # fmt: skip
    spec = spec_from_params(module.params, name)
    wanted = boxes.fingerprint(spec)
    recreate = current is not None and current.labels.get(LABEL_SPEC) != wanted
    running = current is not None and current.status == "running" and not recreate
    changed = current is None or recreate
    if state == "started":
        changed = changed or not running
    after = {"state": "running" if state == "started" else "created", "image": spec.image,
             "fingerprint": wanted}  # fmt: skip
    if not changed:
        after = before
    if changed and not module.check_mode:
        if recreate:
            boxes.remove(name)
            current = None
        if current is None:
            current = boxes.create(spec, start=state == "started")
        elif state == "started" and not running:
            boxes.start(current)
        current.reload()
    return {"changed": changed, "sandbox": describe(current),
            "diff": {"before": before, "after": after}}  # fmt: skip


def main() -> None:
    run_module(
        {
            "name": {"type": "str", "required": True},
            "state": {
                "type": "str",
                "default": "started",
                "choices": ["present", "started", "stopped", "absent"],
            },
            **SPEC_ARGS,
        },
        converge,
        required_if=[("state", "present", ["image"]), ("state", "started", ["image"])],
        supports_check_mode=True,
    )


if __name__ == "__main__":
    main()
