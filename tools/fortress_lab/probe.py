"""Standard-library probes of a machine's state, for the leak check and the image builder.

This file must stay importable without third-party packages: the leak check runs it as
`python3 -c <this file>` inside lab hosts, where it prints one JSON object.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess

_HEX_ID = re.compile(r"[0-9a-f]{64}")


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points (field 5 of mountinfo, octal escapes decoded), in mount order."""
    with open(mountinfo, encoding="utf-8") as fh:
        fields = [line.split() for line in fh]
    unescape = re.compile(r"\\([0-7]{3})")
    return [unescape.sub(lambda m: chr(int(m[1], 8)), f[4]) for f in fields if len(f) > 4]


def processes(prefix: str) -> list[tuple[int, list[str]]]:
    """(pid, argv) of every live process whose argv[0] basename starts with prefix."""
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        pid = int(path.split("/")[2])
        try:
            with open(path, "rb") as fh:
                argv = fh.read().decode(errors="replace").rstrip("\0").split("\0")
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                zombie = fh.read().rpartition(")")[2].split()[0] == "Z"
        except (OSError, IndexError):  # the process went away meanwhile
            continue
        if not zombie and os.path.basename(argv[0]).startswith(prefix):
            found.append((pid, argv))
    return found


def runsc_processes() -> list[str]:
    """'PID ARGV0' of every runsc* process and every containerd shim (a shim outliving its
    container is a leak too: a runsc start failure leaves one behind on Docker 20.10)."""
    found = processes("runsc") + processes("containerd-shim")
    return [f"{pid} {argv[0]}" for pid, argv in found]


def qemu_processes() -> list[str]:
    """'PID ARGV0 -name NAME' of every QEMU system emulator (VM lab hosts), except those of
    labs whose names start with a prefix in FORTRESS_CONCURRENT_LABS (comma-separated): labs
    another stage of the same run owns and cleans up (`make test` runs the VM tests beside
    the other stages)."""
    others = tuple(p for p in os.environ.get("FORTRESS_CONCURRENT_LABS", "").split(",") if p)
    found = []
    for pid, argv in processes("qemu-system"):
        name = argv[argv.index("-name") + 1] if "-name" in argv[:-1] else "?"
        if not (others and name.split("/", 1)[0].startswith(others)):
            found.append(f"{pid} {argv[0]} -name {name}")
    return found


def veth_interfaces() -> list[str]:
    """Names of the veth interfaces in this network namespace (empty without `ip`)."""
    if not shutil.which("ip"):
        return []
    out = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def docker_cgroups(root: str = "/sys/fs/cgroup") -> list[str]:
    """Cgroup directories named after Docker container ids (cgroupfs and systemd drivers)."""
    patterns = [
        f"{root}/*/docker/*",
        f"{root}/*/docker/*/*",  # sandboxes nested under an outer container (cgroup v1)
        f"{root}/system.slice/docker-*.scope/docker/*",  # ... and on cgroup v2
    ]
    found = [
        d
        for pattern in patterns
        for d in glob.glob(pattern)
        if _HEX_ID.fullmatch(os.path.basename(d)) and os.path.isdir(d)
    ]
    found += glob.glob(f"{root}/*/system.slice/docker-*.scope")
    return found


# Host-side sockets of the outer containers' inner daemons (outer_sandbox role).
OUTER_SOCKETS = "/run/fortress/outer/*/docker.sock"


def docker_objects() -> dict[str, list[str]]:
    """Containers, volumes and networks of the local dockerd through its CLI (empty without one),
    and of every outer container's inner daemon (items prefixed with the instance name)."""
    if not shutil.which("docker"):
        return {"containers": [], "volumes": [], "networks": []}
    result = _docker_objects(["docker"])
    for sock in sorted(glob.glob(OUTER_SOCKETS)):
        tenant = sock.split("/")[-2]
        for key, items in _docker_objects(["docker", "-H", f"unix://{sock}"]).items():
            result[key] += [f"{tenant}:{item}" for item in items]
    return result


def _docker_objects(docker: list[str]) -> dict[str, list[str]]:
    commands = {
        "containers": ["ps", "-aq", "--no-trunc"],
        "volumes": ["volume", "ls", "-q"],
        "networks": ["network", "ls", "-q", "--no-trunc"],
    }
    result = {}
    for key, argv in commands.items():
        done = subprocess.run([*docker, *argv], capture_output=True, text=True, check=False)
        result[key] = done.stdout.split() if done.returncode == 0 else []
    return result


def outer_mounts() -> list[str]:
    """Mount points inside each running outer container (its inner dockerd's mounts)."""
    found = []
    for sock in sorted(glob.glob(OUTER_SOCKETS)):
        tenant = sock.split("/")[-2]
        done = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", f"fortress-outer-{tenant}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        pid = done.stdout.strip()
        if done.returncode == 0 and pid not in ("", "0"):
            try:
                found += [f"{tenant}:{m}" for m in mount_points(f"/proc/{pid}/mountinfo")]
            except OSError:
                pass  # the outer stopped meanwhile
    return found


def system_state() -> dict[str, list[str]]:
    """Everything the leak check looks at that is not a Docker API object."""
    return {
        "mounts": mount_points() + (outer_mounts() if shutil.which("docker") else []),
        "runsc": runsc_processes(),
        "qemu": qemu_processes(),
        "veths": veth_interfaces(),
        "cgroups": docker_cgroups(),
    }


if __name__ == "__main__":
    print(json.dumps({**system_state(), **docker_objects()}))
