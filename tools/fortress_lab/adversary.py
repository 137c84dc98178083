"""The adversarial probes of docs/threat-model.md, against any place a process can run.

One implementation of each probe (files/probes.sh, plus the host-side probes below), several
places to run the script, on any `Shell` (a container lab host, `LabHost`, or a testinfra
host, `RemoteHost`):

- `run_sandboxed`: in a sandbox made by the Fortress lifecycle library installed on the host
  (the code the modules run), through the outer's socket, as root or as its default user;
- `run_weak`: the control, a deliberately weak container (plain runc, extra capabilities, no
  seccomp, unmasked /proc) on the same host, which must show each weakness the probe looks
  for: a probe whose control stays green proves nothing;
- `run_outer_root`: as root inside the outer container, as if gVisor had been escaped.

The host-side probes (sandbox pairs, persistence, exhaustion, faults) drive the library from
this machine, reaching a container lab host's sockets through /proc/<pid>/root.
"""

from __future__ import annotations

import importlib
import json
import shlex
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import docker
import docker.errors

from fortress_lab.cis import INNER_BUNDLES
from fortress_lab.common import COLLECTION, client, collection_on_path

SCRIPT = (Path(__file__).parent / "files" / "probes.sh").read_text()
IMAGE = "fortress/smoke:busybox"
# A runtime that is not gVisor under runsc's name: drops runsc's flags and runs runc (with
# no session keyring, which the outer's seccomp profile refuses).
NOT_RUNSC = """#!/bin/sh
for a do
  shift
  case $a in
  --platform=* | --overlay2=* | --host-uds=* | --network=* | --ignore-cgroups) ;;
  create) set -- "$@" create --no-new-keyring ;;
  *) set -- "$@" "$a" ;;
  esac
done
exec /usr/bin/runc "$@"
"""
OPEN, CLOSED, NA = "OPEN", "closed", "na"
# Deliberately weak: root, runc, the capabilities an attacker wants, no seccomp filter,
# /proc unmasked and /proc/sys writable, the host's PID and cgroup namespaces, a default
# network.
WEAK_CAPS = ["SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN", "MKNOD"]
WEAK_SECURITY = [
    "seccomp=unconfined", "systempaths=unconfined", "apparmor=unconfined",
    "no-new-privileges=false",
]  # fmt: skip


@dataclass(frozen=True)
class Probe:
    name: str
    threat: str  # the row of docs/threat-model.md it belongs to
    what: str
    # Inside gVisor the object is the Sentry's own (its /proc, its device implementations):
    # OPEN there reaches nothing of the host's, provided the kernel probe shows gVisor.
    sentry: bool = False


# Probes in files/probes.sh, in its order; then the probes run from the host side.
PROBES: tuple[Probe, ...] = (
    Probe("kernel", "kernel", "syscalls reach the host kernel (uname inside = host's)"),
    Probe("dangerous_caps", "kernel", "effective SYS_ADMIN/MODULE/PTRACE/RAWIO/MKNOD/..."),
    Probe("bounding_set", "kernel", "those capabilities in the bounding set"),
    Probe("no_new_privs", "kernel", "setuid binaries can raise privileges (NoNewPrivs 0)"),
    Probe("mount_tmpfs", "kernel", "mount(2) works"),
    Probe("unshare_mount_ns", "kernel", "unshare(CLONE_NEWNS) works"),
    Probe("cgroup_release_agent", "escape", "a writable cgroup v1 release_agent (CVE-2022-0492)"),
    Probe("core_pattern", "escape", "/proc/sys/kernel/core_pattern opens for writing"),
    Probe("modprobe", "escape", "/proc/sys/kernel/modprobe opens for writing"),
    Probe("binfmt_misc", "escape", "binfmt_misc register opens for writing (or mounts)"),
    Probe("uevent_helper", "escape", "/sys/kernel/uevent_helper opens for writing"),
    Probe("sysrq_trigger", "escape", "/proc/sysrq-trigger opens for writing", sentry=True),
    Probe("proc_sys_write", "escape", "/proc/sys/vm/drop_caches opens for writing"),
    Probe("sys_remount_rw", "escape", "/sys can be made writable"),
    Probe("mknod_char", "devices", "mknod of a character device and opening it", sentry=True),
    Probe("mknod_block", "devices", "mknod of a block device", sentry=True),
    Probe("kcore", "kernel-info", "/proc/kcore reads kernel memory"),
    Probe("kallsyms", "kernel-info", "/proc/kallsyms shows kernel addresses"),
    Probe("timer_list", "kernel-info", "/proc/timer_list shows the host's timers"),
    Probe("mountinfo_host_paths", "host-paths", "host storage paths in mountinfo"),
    Probe("socket_mounts", "docker-socket", "a socket bind-mounted in"),
    Probe("inner_docker_socket", "docker-socket", "the inner daemon's socket is reachable"),
    Probe("host_docker_socket", "docker-socket", "a host Docker/containerd socket is reachable"),
    Probe("ptrace_outside", "cross-sandbox", "ptrace access to a process outside"),
    Probe("host_processes_visible", "cross-sandbox", "processes outside are visible"),
    Probe("network_interfaces", "exfiltration", "a network interface besides loopback"),
    Probe("rootfs_writable", "persistence", "the root filesystem takes new files"),
    Probe("runtime_identity", "kernel", "host side: the runtime is runsc, with its sandbox"),
    Probe("cve_2024_21626_workdir", "escape", "a leaked host fd as working directory"),
    Probe("sandbox_network", "cross-sandbox", "one sandbox's HTTP server answers another"),
    Probe("sandbox_ipc", "cross-sandbox", "one sandbox's shared memory is seen by another"),
    Probe("sandbox_pids", "cross-sandbox", "one sandbox's processes are seen by another"),
    Probe("sandbox_files", "cross-sandbox", "one sandbox's files are seen by another"),
    Probe("persistence", "persistence", "a file outlives the sandbox that wrote it"),
)
SCRIPT_PROBES = tuple(p.name for p in PROBES[:27])
BY_NAME = {p.name: p for p in PROBES}


def parse(output: str) -> dict[str, tuple[str, str]]:
    """{probe: (OPEN|closed|na, detail)} from the script's output lines."""
    seen: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        verdict, _, detail = rest.partition(" ")
        if name in BY_NAME and verdict in (OPEN, CLOSED, NA):
            seen[name] = (verdict, detail)
    return seen


def load_library() -> ModuleType:
    """plugins/module_utils/sandbox, the lifecycle library the modules run, imported by its
    collection name."""
    collection_on_path()
    return importlib.import_module(f"{COLLECTION}.plugins.module_utils.sandbox")


class Shell:
    """Where the script-based probes run: anything with sh(command) -> output, as root."""

    outer: str = "default"

    def sh(self, command: str) -> str:
        raise NotImplementedError

    def run(self, command: str) -> Any:
        """testinfra's host.run shape (rc, stdout, stderr), for fortress_lab.cis targets."""
        raise NotImplementedError

    @property
    def kernel(self) -> str:
        return self.sh("uname -r")


@dataclass
class RemoteHost(Shell):
    """A host reached by a testinfra host (a VM lab host over SSH, say)."""

    host: Any
    outer: str = "default"

    def sh(self, command: str) -> str:
        done = self.host.run(command)
        return (done.stdout + done.stderr).strip()

    def run(self, command: str) -> Any:
        return self.host.run(command)


@dataclass
class LabHost(Shell):
    """A container lab host, reached through its /proc/<pid>/root."""

    name: str
    outer: str = "default"
    container: Any = field(init=False)

    def __post_init__(self) -> None:
        self.container = client().containers.get(self.name)

    @property
    def root(self) -> str:
        self.container.reload()
        return f"/proc/{self.container.attrs['State']['Pid']}/root"

    def sh(self, command: str) -> str:
        done = self.container.exec_run(["sh", "-c", command])
        return done.output.decode(errors="replace").strip()

    def run(self, command: str) -> Any:
        done = self.container.exec_run(["sh", "-c", command], demux=True)
        out, err = done.output
        return SimpleNamespace(
            rc=done.exit_code, stdout=(out or b"").decode(), stderr=(err or b"").decode()
        )

    def docker(self) -> docker.DockerClient:
        """The lab host's own dockerd (where the weak control runs)."""
        return docker.DockerClient(base_url=f"unix://{self.root}/run/docker.sock", timeout=120)

    def sandboxes(self) -> Any:
        """The lifecycle library on the outer container's inner daemon (the double sandbox)."""
        lib = load_library()
        sock = f"{self.root}/run/fortress/outer/{self.outer}/docker.sock"
        # check=False: /proc/<pid>/root is a magic link, which the library's socket check
        # (no symlinks, root-owned) rightly refuses; that check has tests of its own.
        return lib.Sandboxes(
            socket_path=sock, audit_log=None, check=False, fingerprint_key=None,
            runsc_digests=f"{self.root}{lib.RUNSC_DIGESTS}",  # the lab host's, read from here
        )  # fmt: skip

    def wait_outer(self, timeout: float = 120) -> Any:
        """The library on the outer's daemon once it answers (after a restart)."""
        lib = load_library()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.sandboxes()
            except lib.SandboxError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def restart_outer(self) -> Any:
        """Restart the outer container; the library on its daemon once it answers again."""
        self.docker().containers.get(f"fortress-outer-{self.outer}").restart(timeout=10)
        return self.wait_outer()

    def outer_exec(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        """Run argv as root in the outer container (through the lab host's dockerd)."""
        outer = self.docker().containers.get(f"fortress-outer-{self.outer}")
        done = outer.exec_run(argv, environment=env, user="0")
        return done.output.decode(errors="replace")

    @contextmanager
    def writable_outer_root(self) -> Iterator[None]:
        """The outer's root filesystem read-write for the block (root in the outer holds
        CAP_SYS_ADMIN and may remount it: the read-only root is hygiene, not a wall), then
        read-only again."""
        self.outer_exec(["mount", "-o", "remount,bind,rw", "/"])
        try:
            yield
        finally:
            self.outer_exec(["mount", "-o", "remount,bind,ro", "/"])


def unique(what: str) -> str:
    return f"fortress-probe-{what}-{uuid.uuid4().hex[:8]}"


# --- where the script runs ------------------------------------------------------------------


@contextmanager
def sandboxed(host: LabHost, user: str | None = None, **spec: Any) -> Iterator[tuple[Any, str]]:
    """A running sandbox made by the library through the outer's socket (removed after)."""
    lib = load_library()
    boxes = host.sandboxes()
    name = unique("sbx")
    options = {"user": user} if user else {}
    spec.setdefault("command", lib.KEEP_ALIVE)
    container = boxes.create(
        lib.SandboxSpec(image=IMAGE, name=name, owner="probes", **options, **spec)
    )
    try:
        yield boxes, container.name
    finally:
        boxes.remove(name)


# Runs on the host itself with the library site.yml installed there: the library's one-shot
# task (create, exec, always destroy), exactly as the modules make a sandbox, through the
# outer's socket, running a script once. Its last line names the runtime the library picked
# for the sandbox's network and that runtime's runsc flags (the network mode).
RUNNER = """
import json, os, sys
sys.path.insert(0, "/usr/local/lib/fortress")
from sandbox import Sandboxes, SandboxSpec
boxes = Sandboxes(socket_path=os.environ["PROBE_SOCKET"], audit_log=None)
user = {"user": os.environ["PROBE_USER"]} if os.environ.get("PROBE_USER") else {}
spec = SandboxSpec(image=os.environ["PROBE_IMAGE"], owner="probes",
                   network=os.environ["PROBE_NETWORK"], env=json.loads(os.environ["PROBE_ENV"]),
                   pids=int(os.environ["PROBE_PIDS"]), **user)
done = boxes.task(spec, ["/bin/sh", "-c", os.environ["PROBE_SCRIPT"]], timeout=120)
sys.stdout.write(done.stdout + done.stderr)
runtime = boxes.network_plan(spec.network, spec.runtime)[1]
args = boxes.client.info()["Runtimes"].get(runtime, {}).get("runtimeArgs", [])
print()
print("runtime", runtime, " ".join(args))
"""


def run_sandboxed(
    host: Shell, user: str | None = None, script: str = SCRIPT, network: str = "none",
    env: dict[str, str] | None = None, pids: int = 256,
) -> str:  # fmt: skip
    """A script in a sandbox the library on the host makes through the outer's socket
    (pids: its pids limit, which counts gVisor's host threads and stub processes too)."""
    env = {
        "PROBE_SOCKET": f"/run/fortress/outer/{host.outer}/docker.sock", "PROBE_IMAGE": IMAGE,
        "PROBE_USER": user or "", "PROBE_SCRIPT": script, "PROBE_NETWORK": network,
        "PROBE_ENV": json.dumps({"HOST_KERNEL": host.kernel, **(env or {})}),
        "PROBE_PIDS": str(pids),
    }  # fmt: skip
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return host.sh(f"env {assignments} python3 -c {shlex.quote(RUNNER)}")


def weak_options(*extra: str) -> list[str]:
    """`docker run` options of the weak control (the CLI: the SDK has no systempaths)."""
    options = ["--runtime", "runc", "--user", "0", "--pid", "host", "--cgroupns", "host"]
    options += [f"--cap-add={cap}" for cap in WEAK_CAPS]
    options += [f"--security-opt={opt}" for opt in WEAK_SECURITY]
    return [*options, *extra]


def run_weak(host: Shell, *extra: str) -> str:
    """The script in the weak control container on the lab host's dockerd. The lab host's
    Docker socket is mounted where the inner daemon's socket lives in the outer and where the
    host's lives: the weakness the socket probes look for."""
    argv = [
        "docker", "run", "--rm", *weak_options(*extra), "-e", f"HOST_KERNEL={host.kernel}",
        "-v", "/run/docker.sock:/run/fortress/docker.sock",
        "-v", "/run/docker.sock:/var/run/docker.sock", IMAGE, "/bin/sh", "-c", SCRIPT,
    ]  # fmt: skip
    return host.sh(shlex.join(argv))


def run_outer_root(host: Shell) -> str:
    """The script as root in the outer container: the second wall, gVisor assumed fallen."""
    env = {
        "HOST_KERNEL": "",  # the outer shares the host kernel by design; not a finding here
        "OUTSIDE": "systemd systemd-journal systemd-logind",  # the lab host's processes
        "INNER_SOCKET": "/nonexistent",  # the outer owns the inner socket
    }
    argv = ["docker", "exec", "-u", "0"]
    argv += [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    argv += [f"fortress-outer-{host.outer}", "/bin/sh", "-c", SCRIPT]
    return host.sh(shlex.join(argv))


# --- host-side probes -----------------------------------------------------------------------


def runtime_identity(host: LabHost) -> dict[str, Any]:
    """Ours: a library sandbox, seen from the host: runtime and its runsc-sandbox process.
    Control: a runc container on the lab host, seen the same way."""
    lib = load_library()
    with sandboxed(host) as (boxes, name):
        ours = boxes.client.containers.get(name)
        seen = {
            "runtime": ours.attrs["HostConfig"]["Runtime"],
            "sandbox_process": bool(lib.runsc_sandbox_pids(ours.id)),
        }
    engine = host.docker()
    cid = host.sh(shlex.join(["docker", "run", "-d", *weak_options(), IMAGE, "sleep", "60"]))
    weak = engine.containers.get(cid)
    try:
        control = {
            "runtime": weak.attrs["HostConfig"]["Runtime"],
            "sandbox_process": bool(lib.runsc_sandbox_pids(weak.id)),
        }
    finally:
        weak.remove(force=True)
    return {"ours": seen, "control": control}


def cve_2024_21626(host: LabHost) -> dict[str, Any]:
    """A working directory of /proc/self/fd/N (runc < 1.1.12 leaked a host cgroup fd there).
    Ours: the library refuses such a working directory before any runtime sees it (gVisor
    would not resolve a host fd either: runsc fails "failed to find initial working
    directory"). Control: the lab host's runc, with the evidence that it has the fix."""
    lib = load_library()
    refused = []
    for fd in range(3, 10):
        try:
            with sandboxed(host, workdir=f"/proc/self/fd/{fd}"):
                pass
        except lib.SandboxError as exc:
            refused.append("CVE-2024-21626" in str(exc))
    runc = host.sh("runc --version | head -n 1")
    patched = host.sh(
        "zcat /usr/share/doc/runc/changelog.Debian.gz 2>/dev/null | grep -m1 -o CVE-2024-21626"
    )
    return {"ours_refused": len(refused) == 7 and all(refused), "control_runc": runc,
            "control_patched": patched}  # fmt: skip


def oci_no_new_privileges(host: LabHost) -> bool:
    """gVisor's /proc/self/status has no NoNewPrivs line: read the flag from the OCI spec
    the inner daemon handed runsc for a library sandbox (runsc applies it)."""
    with sandboxed(host) as (boxes, name):
        cid = boxes.client.containers.get(name).id
        spec = json.loads(host.outer_exec(["cat", f"{INNER_BUNDLES}/{cid}/config.json"]))
    return spec["process"].get("noNewPrivileges") is True


# Root in the outer container on a lab host without an LSM (container lab hosts): the
# outcomes docs/threat-model.md documents. OPEN rows are what DinD mode cannot close without
# AppArmor/SELinux (hence outer_sandbox_acknowledge_no_second_wall); userns and Sysbox modes
# exist for them. Probes that are meaningless for the outer (kernel, inner socket) are absent.
OUTER_WITHOUT_LSM = {
    "dangerous_caps": OPEN,  # SYS_ADMIN and NET_ADMIN: dockerd and runsc need them
    "bounding_set": OPEN,
    "no_new_privs": CLOSED,
    "mount_tmpfs": OPEN,
    "unshare_mount_ns": OPEN,
    "cgroup_release_agent": CLOSED,  # private cgroup namespace: every hierarchy is rooted at
    # the outer's own cgroup (no release_agent), and no new hierarchy can be mounted from it
    "core_pattern": CLOSED,
    "modprobe": NA,
    "binfmt_misc": OPEN,  # the host's binfmt_misc instance can be mounted
    "uevent_helper": NA,
    "sysrq_trigger": NA,
    "proc_sys_write": CLOSED,
    "sys_remount_rw": OPEN,
    "mknod_char": CLOSED,
    "mknod_block": CLOSED,
    "kcore": NA,
    "kallsyms": CLOSED,
    "timer_list": CLOSED,
    "mountinfo_host_paths": OPEN,
    "socket_mounts": CLOSED,
    "host_docker_socket": CLOSED,
    "ptrace_outside": CLOSED,
    "host_processes_visible": CLOSED,
    "network_interfaces": OPEN,  # its own bridge network (ICC off)
    "rootfs_writable": OPEN,
}


# Root in the outer container on a VM lab host with the fortress-outer AppArmor profile
# enforced (Debian 12, kernel 6.1, cgroup v2, private cgroup namespace): what the profile
# (with the new mount API refused by seccomp, see outer_sandbox_seccomp_enosys_syscalls)
# closes that DinD without an LSM leaves open: binfmt_misc. Still open: the outer's own
# capabilities, mounts in its own mount namespace (a /sys remount too: the profile's file
# rules deny writes under /sys outside the cgroup tree), host paths in mountinfo, its own
# root filesystem and bridge interface.
OUTER_WITH_APPARMOR = {
    **OUTER_WITHOUT_LSM,
    "modprobe": CLOSED,  # exists on this kernel; read-only /proc/sys and the profile
    "sysrq_trigger": CLOSED,
    "kcore": CLOSED,
    "binfmt_misc": CLOSED,
}


SERVE = (
    "mkdir -p /tmp/www && echo fortress-secret > /tmp/www/index.html && "
    "echo fortress-ipc > /dev/shm/fortress-ipc && echo fortress-file > /tmp/fortress-file && "
    "exec httpd -f -p 127.0.0.1:8080 -h /tmp/www"
)
LOOK = {
    "sandbox_network": "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 8080",
    "sandbox_ipc": "cat /dev/shm/fortress-ipc",
    "sandbox_pids": "grep -l 'http[d]' /proc/[0-9]*/cmdline",
    "sandbox_files": "cat /tmp/fortress-file /shared/fortress-file",
}
MARK = {
    "sandbox_network": "fortress-secret",
    "sandbox_ipc": "fortress-ipc",
    "sandbox_pids": "cmdline",
    "sandbox_files": "fortress-file",
}


def sandbox_pairs(host: LabHost) -> dict[str, dict[str, str]]:
    """Two sandboxes side by side: B looks for A's server, shared memory, processes and
    files. Ours: two library sandboxes. Control: two weak containers that share the network,
    IPC and PID namespaces and a volume (what a careless setup gives)."""
    results: dict[str, dict[str, str]] = {name: {} for name in LOOK}
    # A's server is its command: a process an exec leaves behind stops its sandbox.
    with sandboxed(host, command=["/bin/sh", "-c", SERVE]) as (boxes, a):
        time.sleep(1)
        for name, look in LOOK.items():  # A sees its own: the probes can see what B must not
            out = boxes.exec(a, ["/bin/sh", "-c", f"{look} 2>/dev/null; true"], timeout=30)
            results[name]["ours_self"] = out.stdout
        with sandboxed(host) as (_, b):
            for name, look in LOOK.items():
                out = boxes.exec(
                    b, ["/bin/sh", "-c", f"{look} 2>/dev/null; true"], timeout=30
                ).stdout
                results[name]["ours"] = out
    engine = host.docker()
    volume = unique("vol")
    a = engine.containers.run(
        IMAGE, ["/bin/sh", "-c", SERVE.replace("/tmp/fortress-file", "/shared/fortress-file")],
        detach=True, ipc_mode="shareable", volumes={volume: {"bind": "/shared", "mode": "rw"}},
        runtime="runc", name=unique("weak-a"),
    )  # fmt: skip
    try:
        time.sleep(1)
        for name, look in LOOK.items():
            out = engine.containers.run(
                IMAGE, ["/bin/sh", "-c", f"{look} 2>/dev/null; true"], remove=True, runtime="runc",
                network_mode=f"container:{a.id}", ipc_mode=f"container:{a.id}",
                pid_mode=f"container:{a.id}", volumes={volume: {"bind": "/shared", "mode": "ro"}},
            )  # fmt: skip
            results[name]["control"] = out.decode(errors="replace")
    except docker.errors.ContainerError as exc:
        raise AssertionError(f"control probe failed: {exc}") from exc
    finally:
        a.remove(force=True)
        engine.volumes.get(volume).remove(force=True)
    return results


def persistence(host: LabHost) -> dict[str, str]:
    """A sandbox writes a file and is removed; a new one of the same name looks for it.
    Control: the same with a named volume (state kept between tasks)."""
    lib = load_library()
    boxes = host.sandboxes()
    name = unique("persist")
    ours = ""
    for step in ("echo fortress-persist > /tmp/p", "cat /tmp/p"):  # one name, two tasks
        spec = lib.SandboxSpec(image=IMAGE, name=name, owner="probes")
        ours = boxes.task(spec, ["/bin/sh", "-c", step], timeout=30).stdout
    engine = host.docker()
    volume = unique("vol")
    control = ""
    try:
        for step in ("echo fortress-persist > /tmp/p", "cat /tmp/p"):
            control = engine.containers.run(
                IMAGE, ["/bin/sh", "-c", step], remove=True, runtime="runc",
                volumes={volume: {"bind": "/tmp", "mode": "rw"}},
            ).decode()  # fmt: skip
    finally:
        engine.volumes.get(volume).remove(force=True)
    return {"ours": ours, "control": control}


# --- resource exhaustion --------------------------------------------------------------------


def cgroup_file(container_id: str, controller: str, name: str) -> Path | None:
    """The container's cgroup file as this machine sees it (v1: per controller; v2: one
    tree), or None once the cgroup is gone."""
    roots = [Path("/sys/fs/cgroup") / controller, Path("/sys/fs/cgroup")]
    for root in roots:
        if not root.is_dir():
            continue
        found = subprocess.run(
            ["find", str(root), "-type", "d", "-name", f"*{container_id}*", "-print", "-quit"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        if found and (Path(found) / name).exists():
            return Path(found) / name
    return None


def read_counters(path: Path | None) -> dict[str, int]:
    """'key value' lines of a cgroup file ({} when it is gone)."""
    try:
        text = path.read_text() if path else ""
    except OSError:
        return {}
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


def exec_latency(boxes: Any, name: str, runs: int = 3) -> float:
    """Median wall time of `true` run in the sandbox (what a sibling's user feels)."""
    times = []
    for _ in range(runs):
        began = time.monotonic()
        boxes.exec(name, ["true"], timeout=60)
        times.append(time.monotonic() - began)
    return sorted(times)[len(times) // 2]


def host_latency(host: LabHost) -> float:
    began = time.monotonic()
    host.sh("true")
    return time.monotonic() - began


def put_text(container: Any, path: str, text: str) -> None:
    """Write text to path in a container, in place (a file bind-mounted elsewhere keeps its
    inode, so the other side sees the new content)."""
    done = container.exec_run(["sh", "-c", f'cat > "{path}"'], stdin=True, socket=True, user="0")
    raw = getattr(done.output, "_sock", done.output)
    raw.sendall(text.encode())
    raw.shutdown(socket.SHUT_WR)
    raw.recv(1024)  # EOF once cat is done
    raw.close()
