#!/usr/bin/python
# Copyright: Fortress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: copy a file into or out of an agent sandbox."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sandbox_copy
short_description: Copy a file into or out of an agent sandbox, streamed through the sandbox
version_added: 0.1.0
description:
  - Under gVisor a sandbox's root filesystem writes live in the sandbox's own memory overlay,
    invisible to the host, so files cannot be copied from or into the container's layer on
    the host. This module streams them through the sandbox itself (C(cat) in, C(base64)
    out), which works under runsc; the image needs C(/bin/sh), C(cat), C(base64),
    C(sha256sum) and C(chmod), as busybox and coreutils images have.
  - Paths inside the sandbox must be absolute and contain no C(..) component. Paths on the
    managed host (O(src) in, O(dest) out) must lie below O(workspace_root). Each is walked
    from the root one component at a time with no symlink followed (a symlink anywhere below
    the root is refused), only regular files are read (never a FIFO, a device or a file with
    a second hard link, whose other name may be outside the root), and O(dest)
    is written as a new file created exclusively in its verified directory, then renamed;
    a sandbox that shares the workspace and renames or symlinks names in it while the module
    runs cannot make it read or write another host file
    (tests/security/test_library_attacks.py).
  - Also the way to hand a sandbox a secret without putting it in its environment or
    command line - O(content) with C(no_log), O(dest) on a tmpfs (C(/tmp) is one by
    default), mode C(0400). The audit log records the path, never the content.
extends_documentation_fragment:
  - fortress.agents.sandbox
attributes:
  check_mode:
    support: full
    description: Compares checksums and reports what would change, without writing.
  diff_mode:
    support: none
    description: File contents are not shown (they may be secrets).
  idempotent:
    support: full
    description: A file whose sha256 already matches is not written again.
options:
  name:
    description: The sandbox (it must be running).
    type: str
    required: true
  direction:
    description: C(in) copies into the sandbox, C(out) copies out of it.
    type: str
    choices: [in, out]
    default: in
  src:
    description:
      - C(in) - a file on the managed host, below O(workspace_root). Mutually exclusive
        with O(content).
      - C(out) - the file in the sandbox.
    type: str
  content:
    description: C(in) only - the file's content, instead of O(src).
    type: str
  dest:
    description:
      - C(in) - the path in the sandbox.
      - C(out) - a path on the managed host below O(workspace_root); without it the
        content is returned (RV(content_b64)).
    type: str
  mode:
    description:
      - C(in) - the file's mode in the sandbox, a quoted octal string (C('0400'), C('644')) -
        permission bits and the sticky bit, no setuid or setgid.
      - An unquoted mode is refused with the fix - YAML reads it as a number (C(0400) becomes
        256, C(400) stays 400, octal 620), and the two cannot be told apart.
      - C(out) writes O(dest) with mode C(0600), owned by the module's user.
    type: raw
    default: "0600"
  max_size:
    description: Refuse files larger than this many bytes (both directions).
    type: int
    default: 67108864
author:
  - Fortress developers (@fortress)
"""

EXAMPLES = r"""
- name: Give the agent its task description
  fortress.agents.sandbox_copy:
    name: agent-42
    src: /var/lib/fortress/workspaces/agent-42/task.md
    dest: /tmp/task.md

- name: Hand it an API token on a tmpfs, not in its environment
  fortress.agents.sandbox_copy:
    name: agent-42
    content: "{{ vault_llm_token }}"
    dest: /tmp/llm-token
    mode: "0400"
  no_log: true

- name: Collect the agent's report into its workspace
  fortress.agents.sandbox_copy:
    name: agent-42
    direction: out
    src: /tmp/report.json
    dest: /var/lib/fortress/workspaces/agent-42/report.json
"""

RETURN = r"""
sha256:
  description:
    - sha256 of the file copied.
    - Not returned (nor written to the audit log) for O(content), which is treated as a
      secret - the hash of a short secret gives it away.
  returned: success, unless O(content) was given
  type: str
size:
  description: Size in bytes.
  returned: success
  type: int
content_b64:
  description: C(out) without O(dest) - the file's content, base64-encoded.
  returned: when direction is out and dest is not given
  type: str
"""

import base64
import hashlib

from ansible_collections.fortress.agents.plugins.module_utils.sandbox import SandboxError
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.module import run_module


def copy(module, boxes) -> dict:
    p = module.params
    if p["direction"] == "in":
        if p["dest"] is None or (p["src"] is None and p["content"] is None):
            raise SandboxError("direction in needs dest and one of src or content.")
        if p["content"] is not None:
            data = p["content"].encode()
        else:
            data = boxes.read_host_file(p["src"], max_size=p["max_size"])
        digest = hashlib.sha256(data).hexdigest()
        changed = boxes.file_sha256(p["name"], p["dest"]) != digest
        # A hash of content (a secret, no_log) would give a short secret away: not shown.
        shown = {"sha256": digest} if p["content"] is None else {}
        if changed and not module.check_mode:
            boxes.put_file(p["name"], p["dest"], data, mode=p["mode"])
            boxes.audit.event("copy-in", sandbox=p["name"], path=p["dest"], **shown)
        return {"changed": changed, "size": len(data), **shown}
    if p["dest"] is None:
        data = boxes.get_file(p["name"], p["src"], max_size=p["max_size"])
        return {"changed": False, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "content_b64": base64.b64encode(data).decode()}  # fmt: skip
    changed, digest, size = boxes.copy_out(
        p["name"], p["src"], p["dest"], max_size=p["max_size"], check_mode=module.check_mode
    )
    return {"changed": changed, "sha256": digest, "size": size}


def main() -> None:
    run_module(
        {
            "name": {"type": "str", "required": True},
            "direction": {"type": "str", "choices": ["in", "out"], "default": "in"},
            "src": {"type": "str"},
            "content": {"type": "str", "no_log": True},
            "dest": {"type": "str"},
            "mode": {"type": "raw", "default": "0600"},
            "max_size": {"type": "int", "default": 64 * 1024 * 1024},
        },
        copy,
        mutually_exclusive=[("src", "content")],
        required_if=[("direction", "out", ("src",))],
        supports_check_mode=True,
    )


if __name__ == "__main__":
    main()
