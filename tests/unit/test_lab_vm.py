"""VM lab host logic that needs no QEMU: specs, QEMU's command line, inventory, image hash."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from fortress_lab import cis, fleet, images, vm, vm_image
from fortress_lab.common import LabError

BASE = vm_image.BaseImage("debian12", "0123456789ab", Path("/images/debian12-0123456789ab"))


@pytest.fixture
def labs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(vm, "LABS_DIR", tmp_path / "labs")
    return tmp_path / "labs"


def _record(restrict: bool = False, accel: str = "tcg") -> vm.HostRecord:
    options = {"restrict": True} if restrict else {}
    return vm.HostRecord("fortress-t-1", "t", "debian12", BASE.digest, accel, 0, {}, options)


def test_vm_is_a_kind_with_its_own_images() -> None:
    assert fleet.BACKENDS["vm"] is vm.VmBackend
    assert fleet.backend("vm").default_images == ("debian12",)
    fleet.validate([fleet.HostSpec("a", "debian12", options={"restrict": True})], "vm")


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        (fleet.HostSpec("a", "debian13"), "vm", "unknown VM image key 'debian13'"),
        (fleet.HostSpec("a", "debian12", options={"restrict": "yes"}), "vm", "restrict='yes'"),
        (fleet.HostSpec("a", "debian12", options={"ram": 1}), "vm", "options: restrict"),
        (fleet.HostSpec("a", "debian12", options={"restrict": True}), "container", "no options"),
    ],
)
def test_specs_a_kind_cannot_serve_are_refused(
    spec: fleet.HostSpec, kind: str, message: str
) -> None:
    with pytest.raises(LabError, match=message):
        fleet.validate([spec], kind)


def test_platforms_json_carries_options() -> None:
    hosts = fleet.hosts_from_json('[{"name": "v1", "image": "debian12", "options": {"a": 1}}]')
    assert [(h.name, dict(h.options)) for h in hosts] == [("v1", {"a": 1})]


def test_lab_names_must_be_safe_paths() -> None:
    assert vm.lab_dir("pytest-vm") == vm.LABS_DIR / "pytest-vm"
    for bad in ("../x", "a/b", "", "Lab"):
        with pytest.raises(LabError, match="not a valid lab name"):
            vm.lab_dir(bad)


def test_qemu_command_line(labs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "apt_cache_up", lambda: True)
    argv = vm.VmBackend._qemu_argv(_record(), BASE, 40022)
    joined = " ".join(argv)
    assert argv[:1] == [vm.QEMU]
    for expected in (
        "-accel tcg -m 3072 -smp 2",
        f"-kernel {BASE.kernel} -initrd {BASE.initrd}",
        "-nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:40022-:22 ",
        f"file={labs}/t/fortress-t-1/overlay.qcow2,if=virtio,format=qcow2",
        f"-serial file:{labs}/t/fortress-t-1/console.log",
        f"name=opt/io.fortress.lab/authorized_keys,file={labs}/t/id_ed25519.pub",
        f"-daemonize -pidfile {labs}/t/fortress-t-1/qemu.pid",
        'name=opt/io.fortress.lab/apt_proxy,string=Acquire::http::Proxy "http://10.0.2.2:3142";',
    ):
        assert expected in joined
    cmdline = argv[argv.index("-append") + 1].split()
    assert {"root=/dev/vda", "console=ttyS0", "net.ifnames=0"} <= set(cmdline)
    assert "systemd.hostname=fortress-t-1" in cmdline
    assert "-cpu" not in argv


def test_restricted_vm_reaches_only_the_apt_cache_through_an_explicit_forward(
    labs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vm, "apt_cache_up", lambda: True)
    argv = vm.VmBackend._qemu_argv(_record(restrict=True), BASE, 40022)
    relay = f"cmd:{sys.executable} {vm.TCP_RELAY} 3142"
    assert (
        "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:40022-:22,restrict=on,"
        f"guestfwd=tcp:10.0.2.100:3142-{relay}"
    ) in argv
    proxy = (
        'name=opt/io.fortress.lab/apt_proxy,string=Acquire::http::Proxy "http://10.0.2.100:3142";'
    )
    assert proxy in argv
    # Without the apt cache running: no forward and no proxy at all.
    monkeypatch.setattr(vm, "apt_cache_up", lambda: False)
    argv = vm.VmBackend._qemu_argv(_record(restrict=True), BASE, 40022)
    assert "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:40022-:22,restrict=on" in argv
    assert not any("apt_proxy" in arg or "guestfwd" in arg for arg in argv)


def test_each_boot_gets_its_own_machine_id(labs: Path) -> None:
    def machine_id() -> str:
        argv = vm.VmBackend._qemu_argv(_record(), BASE, 1)
        cmdline = argv[argv.index("-append") + 1].split()
        return next(a for a in cmdline if a.startswith("systemd.machine_id="))

    assert machine_id() != machine_id()


def test_kvm_only_when_asked_for(labs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "apt_cache_up", lambda: False)
    monkeypatch.delenv("FORTRESS_VM_ACCEL", raising=False)
    assert vm.accelerator(BASE) == "tcg"
    monkeypatch.setenv("FORTRESS_VM_ACCEL", "kvm")
    assert vm.accelerator(BASE) == "kvm"
    assert "-accel kvm" in " ".join(vm.VmBackend._qemu_argv(_record(accel="kvm"), BASE, 1))
    assert vm.VmBackend._qemu_argv(_record(accel="kvm"), BASE, 1)[-2:] == ["-cpu", "host"]
    monkeypatch.setenv("FORTRESS_VM_ACCEL", "auto")
    monkeypatch.setattr(vm.os, "access", lambda *_: False)  # no usable /dev/kvm
    assert vm.accelerator(BASE) == "tcg"
    monkeypatch.setenv("FORTRESS_VM_ACCEL", "hvf")
    with pytest.raises(LabError, match="use tcg"):
        vm.accelerator(BASE)


def test_inventory_and_molecule_config_reach_the_vm_over_ssh(labs: Path, tmp_path: Path) -> None:
    record = _record()
    record.port, record.hostvars = 40022, {"x": 1}
    record.directory.mkdir(parents=True)
    record.save()
    (host,) = vm.VmBackend().hosts("t")
    assert (host.name, host.kind, host.image, host.state) == (
        "fortress-t-1",
        "vm",
        "debian12",
        "exited",
    )
    hostvars = vm.VmBackend().inventory_vars(host)
    assert hostvars == {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": 40022,
        "ansible_user": "root",
        "ansible_private_key_file": f"{labs}/t/id_ed25519",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
        "fortress_lab_kind": "vm",
        "fortress_lab_image": "debian12",
        "x": 1,
    }
    config = tmp_path / "instance_config.yml"
    fleet.write_molecule_instance_config(config, [host])
    assert yaml.safe_load(config.read_text()) == [
        {
            "instance": "fortress-t-1",
            "address": "127.0.0.1",
            "connection": "ssh",
            "port": 40022,
            "user": "root",
            "identity_file": f"{labs}/t/id_ed25519",
        }
    ]


def test_ssh_command_uses_the_lab_key_only() -> None:
    argv = vm.ssh_argv(40022, Path("/k/id_ed25519"), "true")
    joined = " ".join(argv)
    assert argv[0] == "ssh" and argv[-2:] == ["root@127.0.0.1", "true"]
    for expected in ("-i /k/id_ed25519", "-p 40022", "IdentitiesOnly=yes", "BatchMode=yes"):
        assert expected in joined


def test_vm_image_hash_covers_recipe_steps_and_seed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = vm_image.digest("debian12")
    assert before == vm_image.digest("debian12")
    assert vm_image.base_image("debian12").directory.name == f"debian12-{before}"
    recipe = copy.deepcopy(vm_image.RECIPES["debian12"])
    recipe["include"].append("vim")
    monkeypatch.setitem(vm_image.RECIPES, "debian12", recipe)
    assert vm_image.digest("debian12") != before
    monkeypatch.undo()
    files = tmp_path / "files"
    files.mkdir()
    for name in (vm_image.SEED_SCRIPT, vm_image.SEED_UNIT):
        (files / name).write_bytes((vm_image.FILES / name).read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(vm_image, "FILES", files)
    assert vm_image.digest("debian12") != before
    monkeypatch.undo()
    monkeypatch.setattr(vm_image, "VM_BUILDER_VERSION", vm_image.VM_BUILDER_VERSION + 1)
    assert vm_image.digest("debian12") != before
    # Container image hashes do not depend on anything VM-specific.
    assert images.recipe_hash(images.RECIPES["debian12"]) == images.image_tag("debian12")[-12:]


def test_vm_recipe_preinstalls_what_the_scenario_needs() -> None:
    recipe = vm_image.RECIPES["debian12"]
    wanted = {"linux-image-amd64", "openssh-server", "docker.io", "busybox-static", "apparmor"}
    assert wanted <= set(recipe["include"])
    assert recipe["backports"] == ["runsc"]
    assert recipe["suite"] == "bookworm"
    with pytest.raises(LabError, match=r"unknown VM image key 'debian99'.*debian12"):
        vm_image.recipe("debian99")


def test_docker_target_run_options_go_into_every_docker_run() -> None:
    seen: list[str] = []
    host = SimpleNamespace(run=lambda command: seen.append(command))
    target = cis.DockerTarget(host, run_options=("--runtime", "runsc"))
    target.run("run", "--rm", "img", "true")
    target.run("inspect", "x")
    assert seen == ["docker run --runtime runsc --rm img true", "docker inspect x"]


def test_host_record_round_trip(labs: Path) -> None:
    record = _record(restrict=True)
    record.directory.mkdir(parents=True)
    record.save()
    assert vm.HostRecord.load("t", "fortress-t-1") == record
    assert json.loads((record.directory / "host.json").read_text())["options"] == {"restrict": True}
    assert vm.HostRecord.load("t", "missing") is None


def test_a_lab_is_of_one_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Fake(vm.VmBackend):
        def hosts(self, lab: str) -> list[fleet.LabHost]:
            return [fleet.LabHost("h1", lab, self.kind, "debian12", "running")]

        def down(self, lab: str) -> None:
            calls.append(f"down {self.kind} {lab}")

        def up(self, lab: str, hosts: object) -> list[fleet.LabHost]:
            calls.append(f"up {self.kind} {lab}")
            return self.hosts(lab)

    class FakeContainer(Fake):
        kind = "container"

    monkeypatch.setattr(fleet, "BACKENDS", {"container": FakeContainer, "vm": Fake})
    fleet.up("lab", [fleet.HostSpec("h1", "debian12")], "vm")
    assert calls == ["down container lab", "up vm lab"]
