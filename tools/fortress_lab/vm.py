"""VM lab hosts: Debian VMs under QEMU, reached over SSH on a loopback port (kind `vm`).

Each host boots from a throwaway copy-on-write overlay of a cached base image (vm_image.py),
with the image's kernel and initrd. Per lab: one SSH key pair; per host: a directory
STATE_DIR/vm/labs/<lab>/<host>/ with the overlay, QEMU's pidfile, the serial console log
and host.json (what was asked for and the SSH port). `down` stops the QEMU processes
(SIGTERM, then SIGKILL) and deletes the lab's directory; so does a failed or interrupted
`up` for what it started.

Acceleration: software emulation (`-accel tcg`) unless FORTRESS_VM_ACCEL says `kvm`, or
`auto` and a probe boot shows KVM works here (it hangs on the development machines).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import probe, vm_image
from .backend import HOSTNAME, HostSpec, LabBackend, LabHost, natural_key
from .common import APT_CACHE_PORT, STATE_DIR, LabError, apt_cache_up, say, tail

LABS_DIR = STATE_DIR / "vm" / "labs"
QEMU = "qemu-system-x86_64"
MEMORY_MIB = 3072
CPUS = 2
# The machine's loopback as the VM sees it through QEMU's user network.
GUEST_GATEWAY = "10.0.2.2"
GUEST_APT_CACHE = "10.0.2.100"  # a restricted VM's only way to the machine's apt cache
# QEMU's DNS on the user network. A restricted VM gets no DNS server by DHCP and would write
# no resolv.conf, so every lookup of its own would go to 127.0.0.1:53: to whatever a test
# listens with there (the egress world's resolver counted systemd-timesyncd's NTP pool
# lookups as the sandbox's). Named explicitly, it answers nothing under `restrict`.
GUEST_DNS = "10.0.2.3"
TCP_RELAY = Path(__file__).resolve().parent / "files" / "tcp-relay.py"
FW_CFG_SEED = "opt/io.fortress.lab"  # read by files/fortress-lab-seed.sh in the VM
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
DEFAULT_BOOT_TIMEOUT = 240.0  # seconds to SSH and a finished boot, under TCG
KVM_PROBE_TIMEOUT = 20.0
OPTIONS: dict[str, type] = {"restrict": bool}


class Cancelled(LabError):
    """Another host of the same `up` failed, or the run was interrupted."""


@dataclass
class HostRecord:
    """host.json: what a VM lab host was started from and where its SSH answers."""

    name: str
    lab: str
    image: str
    digest: str
    accel: str
    port: int = 0
    hostvars: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return host_dir(self.lab, self.name)

    def save(self) -> None:
        path = self.directory / "host.json"
        tmp = path.with_name(".host.json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, lab: str, name: str) -> HostRecord | None:
        try:
            data = json.loads((host_dir(lab, name) / "host.json").read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def lab_dir(lab: str) -> Path:
    if not HOSTNAME.fullmatch(lab):
        raise LabError(
            f"{lab!r} is not a valid lab name for VM lab hosts: use 1-63 lowercase letters, "
            "digits and inner hyphens."
        )
    return LABS_DIR / lab


def host_dir(lab: str, name: str) -> Path:
    return lab_dir(lab) / name


def key_path(lab: str) -> Path:
    """The lab's private SSH key (the public one is beside it, .pub)."""
    return lab_dir(lab) / "id_ed25519"


def boot_timeout() -> float:
    return float(os.environ.get("FORTRESS_VM_BOOT_TIMEOUT", DEFAULT_BOOT_TIMEOUT))


def ssh_argv(port: int, key: Path, command: str, connect_timeout: int = 10) -> list[str]:
    """ssh root@127.0.0.1 -p PORT with the lab key only, no host key bookkeeping."""
    return [
        "ssh",
        *SSH_COMMON_ARGS.split(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "-i",
        str(key),
        "-p",
        str(port),
        "root@127.0.0.1",
        command,
    ]


# --- QEMU processes --------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_qemu(
    argv_for: Callable[[int], list[str]],
    errors: Path,
    ports: Iterator[int] | None = None,
    attempts: int = 8,
) -> int:
    """Start a daemonizing QEMU (argv_for(port) must carry -daemonize and the port's hostfwd);
    returns the port. A port taken meanwhile makes QEMU refuse its forward: try another."""
    for _ in range(attempts):
        port = next(ports) if ports is not None else free_port()
        with errors.open("w") as err:
            done = subprocess.run(
                argv_for(port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                check=False,
                timeout=120,
            )
        message = errors.read_text(errors="replace").strip()
        if done.returncode == 0:
            return port
        if "Could not set up host forwarding rule" not in message:
            raise LabError(f"QEMU did not start (exit code {done.returncode}): {tail(message, 10)}")
        say("lab", f"loopback port {port} is taken; trying another")
    raise LabError(f"no free loopback port for SSH after {attempts} attempts.")


def qemu_pids(under: Path) -> set[int]:
    """Live QEMU processes whose command line names a path under `under` (our VMs there)."""
    marker = f"{under}/"
    return {pid for pid, argv in probe.processes("qemu-system") if any(marker in a for a in argv)}


def _alive(pid: int) -> bool:
    return any(p == pid for p, _ in probe.processes("qemu-system"))


def stop(pids: Iterable[int], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is still there after `grace` seconds; wait until gone."""
    pending = set(pids)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in pending:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
            pending = {pid for pid in pending if _alive(pid)}
        if not pending:
            return
    raise LabError(f"QEMU processes {sorted(pending)} survived SIGKILL.")


def accelerator(base: vm_image.BaseImage) -> str:
    """tcg unless FORTRESS_VM_ACCEL is kvm, or auto and KVM boots a kernel here."""
    wanted = os.environ.get("FORTRESS_VM_ACCEL", "").strip() or "tcg"
    if wanted in ("tcg", "kvm"):
        return wanted
    if wanted != "auto":
        raise LabError(f"FORTRESS_VM_ACCEL is {wanted!r}: use tcg (the default), kvm or auto.")
    return "kvm" if _kvm_works(base) else "tcg"


def _kvm_works(base: vm_image.BaseImage) -> bool:
    """Boot the kernel with KVM, no root fs: it must reach its panic (and QEMU exit) quickly.
    Remembered per machine boot in STATE_DIR/vm/kvm-probe.json."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = LABS_DIR.parent / "kvm-probe.json"
    with suppress(OSError, ValueError, KeyError):
        seen = json.loads(cache.read_text())
        if seen["boot_id"] == boot_id:
            return bool(seen["works"])
    console = cache.with_name("kvm-probe.log")
    argv = [
        QEMU, "-accel", "kvm", "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot", "-m", "256", "-serial", f"file:{console}", "-kernel", str(base.kernel),
        "-append", "console=ttyS0 panic=-1",
    ]  # fmt: skip
    try:
        subprocess.run(argv, capture_output=True, check=False, timeout=KVM_PROBE_TIMEOUT)
        works = "Kernel panic" in console.read_text(errors="replace")
    except (subprocess.TimeoutExpired, OSError):
        works = False
    console.unlink(missing_ok=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"boot_id": boot_id, "works": works}))
    say("lab", f"KVM probe: {'works' if works else 'does not work'} here")
    return works


def _run_until(
    argv: list[str], deadline: float, cancel: threading.Event
) -> subprocess.CompletedProcess[str] | None:
    """Run argv; None if the monotonic deadline passes first. Cancelled (the process killed)
    as soon as `cancel` is set."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        while True:
            try:
                out, err = proc.communicate(timeout=0.5)
            except subprocess.TimeoutExpired:
                if cancel.is_set() or time.monotonic() >= deadline:
                    proc.kill()
                    proc.communicate()
                    if cancel.is_set():
                        raise Cancelled("cancelled") from None
                    return None
                continue
            return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# --- signals ---------------------------------------------------------------------------------


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as SIGINT does), so cleanup code runs."""
    if not _in_main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the body (cleanup) is done, then interrupt."""
    if not _in_main_thread():
        yield
        return
    caught: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt(f"signal {caught[0]}")


# --- the backend -----------------------------------------------------------------------------


class VmBackend(LabBackend):
    """Lab hosts as Debian VMs under QEMU, reached over SSH through a loopback port."""

    kind = "vm"
    default_images = ("debian12",)

    def validate_spec(self, spec: HostSpec) -> None:
        vm_image.recipe(spec.image)
        for option, value in spec.options.items():
            if option not in OPTIONS or not isinstance(value, OPTIONS[option]):
                allowed = ", ".join(f"{k} ({t.__name__})" for k, t in OPTIONS.items())
                raise LabError(
                    f"{spec.name}: VM lab host option {option}={value!r} is not valid; "
                    f"options: {allowed}."
                )

    def ensure_images(self, keys: Sequence[str] | None = None) -> list[str]:
        return vm_image.ensure_images(list(keys) if keys else None)

    def up(self, lab: str, hosts: Sequence[HostSpec]) -> list[LabHost]:
        keys = list(dict.fromkeys(h.image for h in hosts))
        bases = {key: vm_image.ensure_image(key) for key in keys}
        accel = accelerator(bases[keys[0]])
        specs = {h.name: h for h in hosts}
        present = self._host_names(lab)
        new_key = self._ensure_key(lab)  # a new key: no running host knows it
        keep = {
            name
            for name in present
            if not new_key and name in specs and self._good(lab, specs[name], bases)
        }
        todo = [h for h in hosts if h.name not in keep]
        for spec in todo:  # stopped, broken or outdated: start afresh
            self._remove_host(lab, spec.name)
        self._boot_all(lab, todo, bases, accel)
        for name in sorted(set(present) - specs.keys(), key=natural_key):
            say("lab", f"removing surplus host {name}")
            self._remove_host(lab, name)
        return self.hosts(lab)

    def down(self, lab: str) -> None:
        directory = lab_dir(lab)
        if not directory.exists():
            return
        for name in self._host_names(lab):
            say("lab", f"removing {name}")
            self._remove_host(lab, name)
        stop(qemu_pids(directory))  # anything else still running from the lab's files
        shutil.rmtree(directory)

    def hosts(self, lab: str) -> list[LabHost]:
        found = []
        for name in self._host_names(lab):
            record = HostRecord.load(lab, name)
            found.append(
                LabHost(
                    name=name,
                    lab=lab,
                    kind=self.kind,
                    image=record.image if record else "?",
                    state="running" if record and self._running(record) else "exited",
                    hostvars=record.hostvars if record else {},
                )
            )
        return found

    def inventory_vars(self, host: LabHost) -> dict[str, Any]:
        record = HostRecord.load(host.lab, host.name)
        if record is None:
            raise LabError(f"VM lab host {host.name} of lab {host.lab!r} has no host.json.")
        return {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": record.port,
            "ansible_user": "root",
            "ansible_private_key_file": str(key_path(host.lab)),
            "ansible_ssh_common_args": SSH_COMMON_ARGS,
            "ansible_python_interpreter": "/usr/bin/python3",
            "fortress_lab_kind": self.kind,
            "fortress_lab_image": host.image,
            **host.hostvars,
        }

    # --- vm specifics ----------------------------------------------------------------------

    @staticmethod
    def _host_names(lab: str) -> list[str]:
        directory = lab_dir(lab)
        if not directory.is_dir():
            return []
        return sorted((d.name for d in directory.iterdir() if d.is_dir()), key=natural_key)

    @staticmethod
    def _running(record: HostRecord) -> bool:
        return bool(qemu_pids(record.directory))

    def _good(self, lab: str, spec: HostSpec, bases: dict[str, vm_image.BaseImage]) -> bool:
        """Running, from the same spec and from the current base image."""
        record = HostRecord.load(lab, spec.name)
        return (
            record is not None
            and record.port > 0
            and (record.image, record.digest) == (spec.image, bases[spec.image].digest)
            and (record.hostvars, record.options) == (dict(spec.hostvars), dict(spec.options))
            and self._running(record)
        )

    @staticmethod
    def _ensure_key(lab: str) -> bool:
        """Make the lab's SSH key pair unless it exists; True when it made one."""
        key = key_path(lab)
        if key.is_file() and key.with_suffix(".pub").is_file():
            return False
        key.parent.mkdir(parents=True, exist_ok=True)
        key.unlink(missing_ok=True)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fortress-lab-{lab}"]
        done = subprocess.run(
            [*keygen, "-f", str(key)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise LabError(f"ssh-keygen for lab {lab!r} failed: {tail(done.stderr, 5)}")
        return True

    def _remove_host(self, lab: str, name: str) -> None:
        """Stop the host's QEMU (by pidfile and by command line) and delete its directory."""
        directory = host_dir(lab, name)
        pids = qemu_pids(directory)
        with suppress(OSError, ValueError):
            pid = int((directory / "qemu.pid").read_text().strip())
            if pid in qemu_pids(directory):
                pids.add(pid)
        stop(pids)
        shutil.rmtree(directory, ignore_errors=True)

    def _boot_all(
        self, lab: str, todo: Sequence[HostSpec], bases: dict[str, vm_image.BaseImage], accel: str
    ) -> None:
        """Boot `todo` side by side; on a failure or an interrupt (SIGINT, SIGTERM) stop and
        delete every one of them before the error propagates."""
        if not todo:
            return
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="vm")
        booted = False
        try:
            with _sigterm_interrupts():
                futures = [
                    pool.submit(self._boot, lab, s, bases[s.image], accel, cancel) for s in todo
                ]
                for future in futures:
                    future.result()
                booted = True
        finally:
            with _signals_deferred():
                if not booted:
                    cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                if not booted:
                    for spec in todo:
                        self._remove_host(lab, spec.name)
                    if not self._host_names(lab):
                        shutil.rmtree(lab_dir(lab), ignore_errors=True)

    def _boot(
        self,
        lab: str,
        spec: HostSpec,
        base: vm_image.BaseImage,
        accel: str,
        cancel: threading.Event,
    ) -> None:
        started = time.monotonic()
        record = HostRecord(spec.name, lab, spec.image, base.digest, accel)
        record.hostvars, record.options = dict(spec.hostvars), dict(spec.options)
        directory = record.directory
        directory.mkdir(parents=True)
        record.save()
        overlay = directory / "overlay.qcow2"
        backing = ["-b", str(base.disk), "-F", "raw"]
        done = subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(overlay)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise LabError(f"qemu-img could not create {overlay}: {tail(done.stderr, 5)}")
        if cancel.is_set():
            raise Cancelled(f"{spec.name}: cancelled")
        record.port = start_qemu(
            lambda port: self._qemu_argv(record, base, port), directory / "qemu.err"
        )
        record.save()
        ssh_after, state = self._wait_ready(record, started, cancel)
        if record.options.get("restrict"):
            self._name_the_resolver(record, cancel)
        say(
            "lab",
            f"{spec.name} (vm {spec.image}, {accel}) up in {time.monotonic() - started:.1f} s: "
            f"SSH on 127.0.0.1:{record.port} after {ssh_after:.1f} s, systemd {state}",
        )

    @staticmethod
    def _name_the_resolver(record: HostRecord, cancel: threading.Event) -> None:
        """A restricted VM's resolv.conf names QEMU's DNS (see GUEST_DNS)."""
        command = f"printf 'nameserver {GUEST_DNS}\\n' > /etc/resolv.conf"
        argv = ssh_argv(record.port, key_path(record.lab), command)
        done = _run_until(argv, time.monotonic() + 60, cancel)
        if done is None or done.returncode != 0:
            why = "no answer in 60 s" if done is None else tail(done.stderr, 3)
            raise LabError(f"{record.name}: could not write /etc/resolv.conf over SSH ({why})")

    @staticmethod
    def _qemu_argv(record: HostRecord, base: vm_image.BaseImage, port: int) -> list[str]:
        directory = record.directory
        nic = f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22"
        apt_cache = apt_cache_up()
        proxy_host = GUEST_GATEWAY
        if record.options.get("restrict"):
            # No traffic beyond the VM but the SSH forward and, when it runs, the machine's
            # apt cache on its loopback (an explicit forward, which restrict=on keeps).
            nic += ",restrict=on"
            if apt_cache:
                proxy_host = GUEST_APT_CACHE
                # cmd: one relay process per connection (a chardev target would carry one
                # connection, opened when QEMU starts).
                relay = f"cmd:{sys.executable} {TCP_RELAY} {APT_CACHE_PORT}"
                nic += f",guestfwd=tcp:{GUEST_APT_CACHE}:{APT_CACHE_PORT}-{relay}"
        cmdline = [
            "root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "quiet",
            "systemd.show_status=1", f"systemd.hostname={record.name}",
            f"systemd.machine_id={uuid.uuid4().hex}", "systemd.firstboot=off",
        ]  # fmt: skip
        argv = [
            QEMU, "-name", f"{record.lab}/{record.name}", "-nodefaults", "-no-user-config",
            "-display", "none", "-accel", record.accel, "-m", str(MEMORY_MIB),
            "-smp", str(CPUS), "-kernel", str(base.kernel), "-initrd", str(base.initrd),
            "-append", " ".join(cmdline),
            "-drive", f"file={directory / 'overlay.qcow2'},if=virtio,format=qcow2,cache=unsafe",
            "-nic", nic, "-device", "virtio-rng-pci",
            "-serial", f"file:{directory / 'console.log'}",
            "-fw_cfg", f"name={FW_CFG_SEED}/authorized_keys,file={key_path(record.lab)}.pub",
            "-daemonize", "-pidfile", str(directory / "qemu.pid"),
        ]  # fmt: skip
        if record.accel == "kvm":
            argv += ["-cpu", "host"]
        if apt_cache:
            proxy = f'Acquire::http::Proxy "http://{proxy_host}:{APT_CACHE_PORT}";'
            argv += ["-fw_cfg", f"name={FW_CFG_SEED}/apt_proxy,string={proxy}"]
        return argv

    def _wait_ready(
        self, record: HostRecord, started: float, cancel: threading.Event
    ) -> tuple[float, str]:
        """Wait for SSH with the lab key, then for systemd to finish booting.
        Returns (seconds to SSH, systemd state)."""
        timeout = boot_timeout()
        deadline = started + timeout
        key = key_path(record.lab)
        reason = "no SSH answer yet"
        ssh_after: float | None = None
        while True:
            if not self._running(record):
                reason = "QEMU exited"
                break
            if time.monotonic() >= deadline:
                break
            command = "true" if ssh_after is None else "systemctl is-system-running --wait"
            done = _run_until(ssh_argv(record.port, key, command), deadline, cancel)
            if done is None:
                reason = "systemd did not finish booting" if ssh_after else "no SSH answer"
                continue
            if ssh_after is None:
                if done.returncode == 0:
                    ssh_after = time.monotonic() - started
                    continue
                reason = f"ssh: {tail(done.stderr, 1) or f'exit code {done.returncode}'}"
            else:
                state = done.stdout.strip()
                if state in ("running", "degraded"):
                    if state == "degraded":
                        state += f" (failed: {self._failed_units(record)})"
                    return ssh_after, state
                reason = f"systemd is {state or '?'}: {tail(done.stderr, 1)}"
            time.sleep(1.0)
        console = record.directory / "console.log"
        log = console.read_text(errors="replace") if console.is_file() else ""
        raise LabError(
            f"{record.name} did not come up within {timeout:.0f} s ({reason}); "
            f"last lines of its serial console:\n{tail(log, 30) or '(nothing yet)'}"
        )

    @staticmethod
    def _failed_units(record: HostRecord) -> str:
        command = "systemctl list-units --failed --no-legend --plain | cut -d' ' -f1"
        done = subprocess.run(
            ssh_argv(record.port, key_path(record.lab), command),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return " ".join(done.stdout.split()) or "?"
