#!/usr/bin/python
# Copyright: Fortress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: run a command in a sandbox, or in a fresh one-shot sandbox."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sandbox_exec
short_description: Run a command in an agent sandbox, with a timeout that kills
version_added: 0.1.0
description:
  - Runs O(argv) or O(cmd) in the existing sandbox O(name), or, with O(image) instead of
    O(name), in a fresh one-shot sandbox that is always destroyed afterwards (also on
    timeout and error).
  - The command runs under the sandbox's own init (Fortress's C(sandbox-init), mounted
    read-only into every sandbox), in a new session and as a descendant of a child subreaper,
    so every process it starts, double-forked or C(setsid) or not, stays within the init's
    reach. The init enforces O(timeout) inside the sandbox and kills them all.
  - A process the command started that is still alive when the command exits has escaped -
    the init kills it, RV(escaped) is true, the sandbox is stopped and the module fails. The
    same happens when the init's report never comes (the command killed it, or it did not
    end within 5 s of the timeout). Long-running services belong in the sandbox's own
    C(command) (M(fortress.agents.sandbox)).
  - An exec the runtime fails to start (Docker says C(OCI runtime exec failed), with exit
    code 126 and no process, as runsc does when its sandbox answers late on a loaded host)
    is tried up to three times in all within O(timeout), each try an C(exec-not-started)
    audit event; then the module fails with the daemon's reason. A command that started is
    never run twice.
  - The daemon's answer is read as hostile - at most O(max_output) bytes per stream are kept
    whatever its frames announce, and a malformed frame ends the command with an error.
  - Output is captured up to O(max_output) bytes per stream; RV(truncated) says whether it was cut.
  - Fails when the command times out or exits non-zero, like M(ansible.builtin.command).
extends_documentation_fragment:
  - fortress.agents.sandbox
attributes:
  check_mode:
    support: none
    description: A command cannot be simulated.
  diff_mode:
    support: none
    description: Nothing to compare.
  idempotent:
    support: none
    description: Every call runs the command.
options:
  name:
    description: The sandbox to run in. Mutually exclusive with O(image).
    type: str
  image:
    description:
      - Run in a fresh one-shot sandbox of this image, with the safe defaults of
        M(fortress.agents.sandbox).
    type: str
  argv:
    description: The command as a list. Mutually exclusive with O(cmd).
    type: list
    elements: str
  cmd:
    description: The command as a shell string, run with C(/bin/sh -c).
    type: str
  stdin:
    description:
      - Data for the command's standard input. Treated as a secret - never shown in the
        module's result or logs; like any C(no_log) value, Ansible also masks it wherever the
        command's output repeats it verbatim.
    type: str
  env:
    description: Environment of the command. Values are never logged.
    type: dict
    default: {}
  timeout:
    description: Seconds before the command is killed.
    type: float
    default: 60
  max_output:
    description: Bytes kept of each of stdout and stderr.
    type: int
    default: 1048576
  owner:
    description: Owner label of a one-shot sandbox.
    type: str
    default: unknown
  cpus:
    description:
      - CPUs of a one-shot sandbox. Inside an outer container at most the outer's cpus
        (its cgroup caps its sandboxes').
    type: float
    default: 1.0
  memory:
    description: Memory limit of a one-shot sandbox.
    type: str
    default: 512m
  network:
    description:
      - C(none) or an egress policy name, for a one-shot sandbox (see fortress.agents.sandbox's
        O(fortress.agents.sandbox#module:network)).
    type: str
    default: none
author:
  - Fortress developers (@fortress)
"""

EXAMPLES = r"""
- name: Run the agent's command in its sandbox, killed after 30 s
  fortress.agents.sandbox_exec:
    name: agent-42
    argv: [python3, /workspace/step.py]
    timeout: 30
  register: step

- name: One-shot - create, run, collect, destroy
  fortress.agents.sandbox_exec:
    image: fortress/smoke:busybox
    cmd: "echo hello from $(uname -r)"
    owner: ci-job-9
"""

RETURN = r"""
stdout:
  description: Standard output (up to O(max_output) bytes).
  returned: always
  type: str
stderr:
  description: Standard error (up to O(max_output) bytes).
  returned: always
  type: str
rc:
  description: Exit status; null when the command was killed by the timeout.
  returned: always
  type: int
duration:
  description: Seconds the command ran.
  returned: always
  type: float
truncated:
  description: Whether output was cut at O(max_output).
  returned: always
  type: bool
timed_out:
  description: Whether the timeout killed the command.
  returned: always
  type: bool
escaped:
  description:
    - Whether a process the command started outlived it, or the sandbox's init could not
      report (the command killed it). The sandbox was stopped.
  returned: always
  type: bool
limits_hit:
  description:
    - The limits of the sandbox's cgroup that fired while the command ran, read from the
      kernel's counters on the host (C(pids) - a fork refused at the pids limit; C(memory) -
      an OOM kill, also when Docker recorded one for a sandbox it killed).
    - Empty where the module does not see the host's C(/proc) and cgroups.
  returned: always
  type: list
  elements: str
  sample: [pids]
"""

from dataclasses import asdict

from ansible_collections.fortress.agents.plugins.module_utils.sandbox import SandboxSpec
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.module import run_module


def run(module, boxes) -> dict:
    p = module.params
    argv = p["argv"] or ["/bin/sh", "-c", p["cmd"]]
    stdin = p["stdin"].encode() if p["stdin"] is not None else None
    if p["image"]:
        spec = SandboxSpec(image=p["image"], env=p["env"], owner=p["owner"], cpus=p["cpus"],
                           memory=p["memory"], network=p["network"])  # fmt: skip
        result = boxes.task(spec, argv, stdin=stdin, timeout=p["timeout"],
                            max_output=p["max_output"])  # fmt: skip
    else:
        result = boxes.exec(p["name"], argv, stdin=stdin, env=p["env"], timeout=p["timeout"],
                            max_output=p["max_output"])  # fmt: skip
    out = asdict(result)
    fired = (f"; the sandbox's {' and '.join(result.limits_hit)} limit fired"
             if result.limits_hit else "")  # fmt: skip
    if result.escaped:
        which = f"sandbox {p['name']}" if p["name"] else "the one-shot sandbox"
        module.fail_json(
            msg=f"a process the command started outlived it (or killed the sandbox's init), so "
                f"{which} was stopped{fired}: run long-lived processes as the sandbox's own "
                "command, not from an exec.",
            changed=True, **out,
        )  # fmt: skip
    if result.timed_out:
        module.fail_json(msg=f"the command timed out after {p['timeout']} s and was killed{fired}.",
                         changed=True, **out)  # fmt: skip
    if result.rc != 0:
        module.fail_json(msg=f"the command exited with status {result.rc}{fired}.", changed=True,
                         **out)  # fmt: skip
    return {"changed": True, **out}


def main() -> None:
    run_module(
        {
            "name": {"type": "str"},
            "image": {"type": "str"},
            "argv": {"type": "list", "elements": "str"},
            "cmd": {"type": "str"},
            "stdin": {"type": "str", "no_log": True},
            "env": {"type": "dict", "default": {}, "no_log": True},
            "timeout": {"type": "float", "default": 60},
            "max_output": {"type": "int", "default": 1048576},
            "owner": {"type": "str", "default": "unknown"},
            "cpus": {"type": "float", "default": 1.0},
            "memory": {"type": "str", "default": "512m"},
            "network": {"type": "str", "default": "none"},
        },
        run,
        mutually_exclusive=[("name", "image"), ("argv", "cmd")],
        required_one_of=[("name", "image"), ("argv", "cmd")],
        supports_check_mode=False,
    )


if __name__ == "__main__":
    main()
