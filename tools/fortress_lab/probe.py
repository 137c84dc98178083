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
    """'PID ARGV0' of every process whose argv[0] basename starts with runsc."""
    return [f"{pid} {argv[0]}" for pid, argv in processes("runsc")]


def qemu_processes() -> list[str]:
    """'PID ARGV0 -name NAME' of every QEMU system emulator (VM lab hosts)."""
    found = []
    for pid, argv in processes("qemu-system"):
        name = argv[argv.index("-name") + 1] if "-name" in argv[:-1] else "?"
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
    found = [
        d
        for d in glob.glob(f"{root}/*/docker/*")
        if _HEX_ID.fullmatch(os.path.basename(d)) and os.path.isdir(d)
    ]
    found += glob.glob(f"{root}/*/system.slice/docker-*.scope")
    return found


def docker_objects() -> dict[str, list[str]]:
    """Containers, volumes and networks of the local dockerd through its CLI (empty without one)."""
    commands = {
        "containers": ["docker", "ps", "-aq", "--no-trunc"],
        "volumes": ["docker", "volume", "ls", "-q"],
        "networks": ["docker", "network", "ls", "-q", "--no-trunc"],
    }
    if not shutil.which("docker"):
        return {key: [] for key in commands}
    result = {}
    for key, argv in commands.items():
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        result[key] = done.stdout.split() if done.returncode == 0 else []
    return result


def system_state() -> dict[str, list[str]]:
    """Everything the leak check looks at that is not a Docker API object."""
    return {
        "mounts": mount_points(),
        "runsc": runsc_processes(),
        "qemu": qemu_processes(),
        "veths": veth_interfaces(),
        "cgroups": docker_cgroups(),
    }


if __name__ == "__main__":
    print(json.dumps({**system_state(), **docker_objects()}))
