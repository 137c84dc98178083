"""VM lab host base images: a Debian root filesystem made by the shared debootstrap pipeline
(images.py), turned into a bootable raw ext4 disk with its kernel and initrd beside it, and
cached under STATE_DIR/vm/images/<key>-<recipe hash>/.

Everything the VM scenario needs is installed here, natively in the chroot: inside the VM
(software emulation) the same work would be about 20x slower. VMs never write to a base
image: each boots from its own copy-on-write overlay (vm.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import images
from .common import STATE_DIR, LabError, say, tail

# Bump when the VM build steps below change the image content.
VM_BUILDER_VERSION = 1
IMAGES_DIR = STATE_DIR / "vm" / "images"
FILES = Path(__file__).resolve().parent / "files"
SEED_SCRIPT = "fortress-lab-seed.sh"
SEED_UNIT = "fortress-lab-seed.service"

# The single source of truth for VM lab images: key -> recipe.
RECIPES: dict[str, dict[str, Any]] = {
    "debian12": {
        "variant": "minbase",
        "suite": "bookworm",
        "include": [
            # A bootable, SSH-reachable Debian server.
            "linux-image-amd64",
            "systemd",
            "systemd-sysv",
            "udev",
            "kmod",
            "python3",
            "iproute2",
            "procps",
            "ifupdown",
            "isc-dhcp-client",
            "openssh-server",
            "sudo",
            "ca-certificates",
            "python3-apt",
            # What the roles install (baseline, docker_engine, gvisor), so a converge finds
            # it present instead of installing it at emulated speed.
            "docker.io",
            "busybox-static",
            "apparmor",
            "apparmor-utils",
            "iptables",
            "nftables",
            "curl",
            "gnupg",
            "systemd-timesyncd",
            "python3-requests",
            "python3-docker",
            "python3-h11",  # the egress role's, for its proxy
        ],
        # Installed from <suite>-backports (Debian 12's own runsc is the slow 2022 build),
        # as the gvisor role does; the build's backports source is removed afterwards.
        "backports": ["runsc"],
        "mirror": images.MIRROR,
        "security_mirror": images.SECURITY_MIRROR,
        # apt's daily timers would run apt inside the VM, slowly, holding the dpkg lock that
        # a converge needs.
        "mask": ["apt-daily.timer", "apt-daily-upgrade.timer"],
        "disk_size_gib": 6,
    },
}

_FSTAB = "/dev/vda / ext4 errors=remount-ro 0 1\n"
_HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
_INTERFACES = (
    "# Written by fortress_lab (vm_image.py); the VM boots with net.ifnames=0.\n"
    "source /etc/network/interfaces.d/*\n\n"
    "auto lo\niface lo inet loopback\n\n"
    "auto eth0\niface eth0 inet dhcp\n"
)
_SSHD = (
    "# Fortress lab: root logs in with the lab's key only (no root password exists).\n"
    "PermitRootLogin prohibit-password\n"
    "PasswordAuthentication no\n"
    "KbdInteractiveAuthentication no\n"
    "UseDNS no\n"
    "HostKey /etc/ssh/ssh_host_ed25519_key\n"
)
# No NTP servers: a lab VM must not send traffic beyond the machine; its clock comes from
# QEMU's RTC (the machine's clock).
_TIMESYNCD = "[Time]\nNTP=\nFallbackNTP=\n"


@dataclass(frozen=True)
class BaseImage:
    """A built VM base image: a raw ext4 disk and the kernel and initrd to boot it with."""

    key: str
    digest: str
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "disk.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def recipe(key: str) -> dict[str, Any]:
    """The recipe for a VM image key; a LabError naming the valid keys otherwise."""
    if key not in RECIPES:
        raise LabError(f"unknown VM image key {key!r}: choose one of {', '.join(sorted(RECIPES))}.")
    return RECIPES[key]


def digest(key: str) -> str:
    """The recipe hash of a VM image: recipe, shared and VM build steps, installed files."""
    files = {
        name: hashlib.sha256((FILES / name).read_bytes()).hexdigest()
        for name in (SEED_SCRIPT, SEED_UNIT)
    }
    builder = {
        "vm": VM_BUILDER_VERSION,
        "files": files,
        "texts": [_FSTAB, _HOSTS, _INTERFACES, _SSHD, _TIMESYNCD],
    }
    return images.recipe_hash(recipe(key), kind_builder=builder)


def base_image(key: str) -> BaseImage:
    return BaseImage(key, digest(key), IMAGES_DIR / f"{key}-{digest(key)}")


def ensure_image(key: str) -> BaseImage:
    """Build the VM image for `key` unless it is cached; returns it."""
    image = base_image(key)
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(IMAGES_DIR / ".lock"):  # one builder at a time, across processes
        if image.disk.is_file():
            say("image", f"VM image {image.directory.name} up to date")
            return image
        _build(image)
    return image


def ensure_images(keys: list[str] | None = None) -> list[str]:
    """Build the missing VM images among `keys` (default: all recipes); their directories."""
    keys = list(dict.fromkeys(keys or RECIPES))
    for key in keys:
        recipe(key)  # fail on a bad key before starting any build
    return [str(ensure_image(key).directory) for key in keys]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(image: BaseImage) -> None:
    recipe_ = recipe(image.key)
    with images.building(f"vm-{image.key}", recipe_, image.directory.name) as workdir:
        rootfs = workdir / "rootfs"
        images.build_rootfs(f"vm-{image.key}", recipe_, rootfs, _customize_vm)
        staging = Path(tempfile.mkdtemp(prefix=f".{image.key}-", dir=IMAGES_DIR))
        try:
            _make_disk(rootfs, staging, recipe_["disk_size_gib"])
            (staging / "recipe.json").write_text(
                json.dumps({"key": image.key, "digest": image.digest, "recipe": recipe_}, indent=1)
            )
            staging.rename(image.directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _remove_older(image)


def _customize_vm(rootfs: Path, recipe_: dict[str, Any]) -> None:
    """Turn the (already customised) debootstrap tree into a bootable VM lab host."""
    etc = rootfs / "etc"
    (etc / "fstab").write_text(_FSTAB)
    (etc / "network/interfaces").write_text(_INTERFACES)
    (etc / "hosts").write_text(_HOSTS)
    (etc / "resolv.conf").unlink(missing_ok=True)  # dhclient writes the VM's own
    (etc / "ssh/sshd_config.d/fortress-lab.conf").write_text(_SSHD)
    for key in etc.glob("ssh/ssh_host_*"):  # each boot makes its own (the seed unit)
        key.unlink()
    (etc / "systemd/timesyncd.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/timesyncd.conf.d/fortress-lab.conf").write_text(_TIMESYNCD)
    _chroot(rootfs, "usermod", "--password", "*", "root")  # no password: key login only
    (rootfs / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    script = rootfs / "usr/local/sbin/fortress-lab-seed"
    shutil.copyfile(FILES / SEED_SCRIPT, script)
    script.chmod(0o755)
    unit = etc / "systemd/system" / SEED_UNIT
    shutil.copyfile(FILES / SEED_UNIT, unit)
    wants = etc / "systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / SEED_UNIT).symlink_to(f"/etc/systemd/system/{SEED_UNIT}")
    _install_backports(rootfs, recipe_)


def _install_backports(rootfs: Path, recipe_: dict[str, Any]) -> None:
    if not recipe_["backports"]:
        return
    suite = f"{recipe_['suite']}-backports"
    source = rootfs / "etc/apt/sources.list.d/fortress-build-backports.sources"
    source.write_text(images.sources_stanza(rootfs, recipe_["mirror"], suite))
    policy = rootfs / "usr/sbin/policy-rc.d"  # no service starts in the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        images.chroot_apt(rootfs, "update", "-qq")
        install = ["install", "-y", "-qq", "--no-install-recommends", "-t", suite]
        images.chroot_apt(rootfs, *install, *recipe_["backports"])
        images.chroot_apt(rootfs, "clean")
    finally:
        source.unlink(missing_ok=True)
        policy.unlink(missing_ok=True)


def _chroot(rootfs: Path, *argv: str) -> None:
    done = subprocess.run(
        ["chroot", str(rootfs), *argv], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise LabError(f"{argv[0]} in the new VM image failed: {tail(done.stderr, 5)}")


def _make_disk(rootfs: Path, directory: Path, size_gib: int) -> None:
    """disk.raw: a sparse ext4 image of rootfs; vmlinuz and initrd.img copied beside it."""
    kernels = sorted(rootfs.glob("boot/vmlinuz-*"))
    initrds = [k.with_name(k.name.replace("vmlinuz-", "initrd.img-", 1)) for k in kernels[-1:]]
    if not initrds or not initrds[0].is_file():
        raise LabError(f"the VM image has no kernel with its initrd in {rootfs / 'boot'}.")
    shutil.copyfile(kernels[-1], directory / "vmlinuz")
    shutil.copyfile(initrds[0], directory / "initrd.img")
    disk = directory / "disk.raw"
    with disk.open("wb") as fh:
        fh.truncate(size_gib << 30)
    argv = ["mkfs.ext4", "-q", "-F", "-L", "fortress-root", "-d", str(rootfs), str(disk)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise LabError(f"mkfs.ext4 -d of the VM image failed: {tail(done.stderr, 10)}")
    disk.chmod(0o444)  # VMs write only to their overlays


def _remove_older(image: BaseImage) -> None:
    """Delete older builds of the same key (a running VM keeps its open base file)."""
    for old in IMAGES_DIR.glob(f"{image.key}-*"):
        if old != image.directory and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            say("image", f"removed older VM image {old.name}")
