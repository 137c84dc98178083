"""VM lab hosts: a Debian VM under QEMU (software emulation), reached over SSH.

One VM serves the whole session (the `vm_lab_host` fixture, restricted network); the last
test takes it down and checks nothing is left. The busy-port and interrupt tests start
QEMU without booting a VM to the end, so they cost seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fortress_lab import leakcheck, vm
from fortress_lab.common import REPO_ROOT, LabError, apt_cache_up
from fortress_lab.pytest_plugin import VM_PLATFORMS, VmLabHost, run_ansible, run_cli

pytestmark = pytest.mark.lab

# A VM lab touches no Docker object; the machine's engine may serve others meanwhile (make
# test runs these tests beside the container stages): their containers' mounts are not ours.
NOT_VM = sorted(set(leakcheck.CATEGORIES) - {"qemu", "mounts"})
ENGINE_MOUNTS = ("/var/lib/docker/", "/run/docker/", "/run/containerd/", "/var/run/docker/")


def vm_leaks(before: leakcheck.Snapshot, settle: float = 10.0) -> dict[str, set[str]]:
    """What a VM lab left on this machine since `before`: QEMU processes and mounts, except
    the mounts of the engine's containers (and those inside outers: "TENANT:/path")."""
    leaks = leakcheck.leaks_since(before, ignore=NOT_VM, settle=settle)
    mounts = {
        m for m in leaks.pop("mounts", set())
        if not m.startswith(ENGINE_MOUNTS) and ":" not in m.split("/", 1)[0]
    }  # fmt: skip
    return {**leaks, "mounts": mounts} if mounts else leaks


def test_ssh_takes_the_lab_key_and_nothing_else(vm_lab_host: VmLabHost, tmp_path: Path) -> None:
    assert vm_lab_host.check("id -un") == "root"
    lab_key = vm_lab_host.key.with_name("id_ed25519.pub").read_text().strip()
    assert vm_lab_host.check("cat /root/.ssh/authorized_keys") == lab_key
    assert vm_lab_host.check("passwd --status root").split()[1] == "L"  # no root password
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True)
    done = subprocess.run(
        vm.ssh_argv(vm_lab_host.port, other, "true"), capture_output=True, text=True, check=False
    )
    assert done.returncode == 255
    # The server offers public keys only: no password or keyboard-interactive fallback.
    assert "Permission denied (publickey)." in done.stderr, done.stderr


def test_ansible_reaches_the_vm_through_the_generated_inventory(vm_lab_host: VmLabHost) -> None:
    done = run_ansible(vm_lab_host.inventory, "-m", "setup", "-a", "filter=ansible_virt*")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ansible_virtualization_role": "guest"' in done.stdout


def test_the_vm_runs_systemd_as_pid_1_on_its_own_kernel(vm_lab_host: VmLabHost) -> None:
    assert vm_lab_host.check("ps -p 1 -o comm=") == "systemd"
    assert vm_lab_host.check("systemctl is-system-running") == "running"
    assert vm_lab_host.check("hostname") == vm_lab_host.name
    assert vm_lab_host.check("uname -r") != os.uname().release


def test_up_again_keeps_the_running_vm(vm_lab_host: VmLabHost) -> None:
    pid = (vm_lab_host.directory / "qemu.pid").read_text()
    done = run_cli(
        "up", "--kind", "vm", "--lab", vm_lab_host.lab, "--platforms-json", VM_PLATFORMS,
        "--inventory", str(vm_lab_host.inventory),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (vm_lab_host.directory / "qemu.pid").read_text() == pid
    assert f"ansible_port: {vm_lab_host.port}\n" in vm_lab_host.inventory.read_text()


def test_the_restricted_network_reaches_nothing_beyond_the_vm(vm_lab_host: VmLabHost) -> None:
    # The machine's apt cache answers on its loopback: an unrestricted VM reaches it (and all
    # of this machine's loopback) as 10.0.2.2; a restricted one does not, and reaches the apt
    # cache alone through QEMU's explicit forward at 10.0.2.100 (its apt proxy).
    assert apt_cache_up()
    done = vm_lab_host.ssh("curl -s -m 5 -o /dev/null http://10.0.2.2:3142/")
    assert done.returncode != 0
    proxy = vm_lab_host.check("cat /etc/apt/apt.conf.d/00fortress-lab-proxy")
    assert "http://10.0.2.100:3142" in proxy
    done = vm_lab_host.ssh("curl -s -m 5 -o /dev/null -w '%{http_code}' http://10.0.2.100:3142/")
    assert done.returncode == 0, done.stderr
    # Nothing else on the forward's address, nor on the gateway's SSH port.
    for url in ("http://10.0.2.100:22/", "http://10.0.2.2:22/", "http://10.0.2.3:53/"):
        assert vm_lab_host.ssh(f"curl -s -m 5 -o /dev/null {url}").returncode != 0, url
    # DHCP names no DNS server here: without this line every lookup of the VM's own would go
    # to 127.0.0.1:53, where the egress tests' world listens (it counted timesyncd's lookups).
    assert vm_lab_host.check("cat /etc/resolv.conf") == f"nameserver {vm.GUEST_DNS}"


def test_a_busy_port_is_skipped_for_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def paused_qemu(port: int) -> list[str]:  # no disk, never runs a CPU: only the forward
        nic = f"user,hostfwd=tcp:127.0.0.1:{port}-:22,restrict=on"
        pidfile = tmp_path / f"qemu-{port}.pid"
        return [
            vm.QEMU, "-accel", "tcg", "-nodefaults", "-display", "none", "-S",
            "-name", "pytest-vm-busy-port", "-nic", nic, "-daemonize", "-pidfile", str(pidfile),
        ]  # fmt: skip

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        try:
            port = vm.start_qemu(paused_qemu, tmp_path / "err", iter([taken, vm.free_port()]))
            assert port != taken
            assert f"loopback port {taken} is taken; trying another" in capsys.readouterr().out
            assert int((tmp_path / f"qemu-{port}.pid").read_text()) in vm.qemu_pids(tmp_path)
            with pytest.raises(LabError, match="no free loopback port for SSH after 2 attempts"):
                vm.start_qemu(paused_qemu, tmp_path / "err", iter([taken, taken]), attempts=2)
        finally:
            vm.stop(vm.qemu_pids(tmp_path))
    assert not vm.qemu_pids(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_up_leaves_no_qemu_and_no_files(sig: signal.Signals) -> None:
    lab = f"pytest-vm-{sig.name.lower()}"
    assert run_cli("down", "--lab", lab).returncode == 0
    before = leakcheck.snapshot()
    up = subprocess.Popen(
        [sys.executable, "-m", "fortress_lab", "up", "--kind", "vm", "--lab", lab, "--count", "1"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "tools")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        # A suite started as a background job of a shell without job control inherits
        # SIGINT ignored, and so would `up`: give it the default disposition, as a terminal has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not vm.qemu_pids(vm.lab_dir(lab)) and time.monotonic() < deadline:
            assert up.poll() is None, up.communicate()
            time.sleep(0.2)
        assert vm.qemu_pids(vm.lab_dir(lab)), "QEMU never started"
        time.sleep(2)  # booting now
        up.send_signal(sig)
        _, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    try:
        assert up.returncode == 2, err
        assert err.strip().endswith("fortress_lab: interrupted."), err
        assert not vm.lab_dir(lab).exists()
        assert vm_leaks(before, settle=5) == {}
    finally:  # a failure here must not leave a VM for the session's own leak check
        run_cli("down", "--lab", lab)


def test_a_vm_not_up_in_time_says_why_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = "pytest-vm-slow"
    assert run_cli("down", "--lab", lab).returncode == 0
    before = leakcheck.snapshot()
    monkeypatch.setenv("FORTRESS_VM_BOOT_TIMEOUT", "8")
    done = run_cli("up", "--kind", "vm", "--lab", lab, "--count", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    first, _, console = done.stderr.partition("\n")
    assert first.startswith(f"fortress_lab: fortress-{lab}-1 did not come up within 8 s (")
    assert "SSH" in first or "ssh:" in first  # the reason: SSH did not answer yet
    assert first.endswith("); last lines of its serial console:")
    assert console.strip(), "the console tail (or that it is empty) is missing"
    assert not vm.lab_dir(lab).exists()
    assert vm_leaks(before, settle=5) == {}


@pytest.mark.vm_lab_last
def test_down_leaves_no_qemu_no_overlay_and_no_key(vm_lab_host: VmLabHost) -> None:
    files = [
        vm_lab_host.directory / "overlay.qcow2",
        vm_lab_host.directory / "qemu.pid",
        vm_lab_host.directory / "console.log",
        vm_lab_host.key,
        vm_lab_host.key.with_name("id_ed25519.pub"),
    ]
    assert all(path.is_file() for path in files)
    pid = int((vm_lab_host.directory / "qemu.pid").read_text())
    assert pid in vm.qemu_pids(vm.lab_dir(vm_lab_host.lab))
    for _attempt in range(2):  # idempotent
        done = run_cli("down", "--lab", vm_lab_host.lab)
        assert done.returncode == 0, done.stderr
    assert not any(path.exists() for path in files)
    assert not vm.lab_dir(vm_lab_host.lab).exists()
    assert not Path(f"/proc/{pid}").exists() or pid not in vm.qemu_pids(vm.LABS_DIR)
    assert vm_leaks(vm_lab_host.before) == {}
