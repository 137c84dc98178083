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
    managed host (O(src) in, O(dest) out) must lie below O(workspace_root); the module never
    reads or writes other host files.
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
    description: C(in) - the file's mode in the sandbox.
    type: str
    default: "0600"
  max_size:
    description: C(out) - refuse files larger than this many bytes.
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
  description: sha256 of the file copied.
  returned: success
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
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    COMMON_ARGS,
    SandboxError,
    from_module_params,
    host_path_in_workspace,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "direction": {"type": "str", "choices": ["in", "out"], "default": "in"},
            "src": {"type": "str"},
            "content": {"type": "str", "no_log": True},
            "dest": {"type": "str"},
            "mode": {"type": "str", "default": "0600"},
            "max_size": {"type": "int", "default": 64 * 1024 * 1024},
            **COMMON_ARGS,
        },
        mutually_exclusive=[("src", "content")],
        required_if=[("direction", "out", ("src",))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        boxes = from_module_params(p)
        if p["direction"] == "in":
            if p["dest"] is None or (p["src"] is None and p["content"] is None):
                raise SandboxError("direction in needs dest and one of src or content.")
            if p["content"] is not None:
                data = p["content"].encode()
            else:
                with open(host_path_in_workspace(p["src"], p["workspace_root"]), "rb") as f:
                    data = f.read()
            digest = hashlib.sha256(data).hexdigest()
            changed = boxes.file_sha256(p["name"], p["dest"]) != digest
            if changed and not module.check_mode:
                boxes.put_file(p["name"], p["dest"], data, mode=p["mode"])
                boxes.audit.event("copy-in", sandbox=p["name"], path=p["dest"], sha256=digest)
            module.exit_json(changed=changed, sha256=digest, size=len(data))
        data = boxes.get_file(p["name"], p["src"], max_size=p["max_size"])
        digest = hashlib.sha256(data).hexdigest()
        if p["dest"] is None:
            module.exit_json(changed=False, sha256=digest, size=len(data),
                             content_b64=base64.b64encode(data).decode())  # fmt: skip
        dest = host_path_in_workspace(p["dest"], p["workspace_root"], must_exist=False)
        old = None
        if os.path.isfile(dest):
            with open(dest, "rb") as f:
                old = hashlib.sha256(f.read()).hexdigest()
        changed = old != digest
        if changed and not module.check_mode:
            tmp = f"{dest}.fortress-partial"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
            boxes.audit.event("copy-out", sandbox=p["name"], path=p["src"], sha256=digest)
    except SandboxError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename}: {exc.strerror}.")
    module.exit_json(changed=changed, sha256=digest, size=len(data))


if __name__ == "__main__":
    main()
