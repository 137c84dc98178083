"""Lab host images: Debian root filesystems made with debootstrap, imported into the
machine's dockerd and cached under a tag derived from the recipe.

The debootstrap pipeline (`building`, `build_rootfs`, `chroot_apt`, `recipe_hash`) is shared
with the VM lab hosts' disk images (vm_image.py): one implementation for both kinds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker.errors

from .common import APT_CACHE_PORT, STATE_DIR, LabError, apt_cache_up, client, say, tail
from .probe import mount_points

# Bump when the build steps below change in a way that changes the image.
BUILDER_VERSION = 2  # bump when the build steps change the image content
REPOSITORY = "fortress-lab"
BUILD_DIR = STATE_DIR / "build"
DEBOOTSTRAP_TIMEOUT = 1800
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"

_BASE: dict[str, Any] = {
    "variant": "minbase",
    "include": [
        "python3",
        "systemd",
        "systemd-sysv",
        "sudo",
        "ca-certificates",
        "iproute2",
        "procps",
        "gnupg",
        "curl",
        "apt-utils",
        # What a standard Debian server has and Ansible's apt module needs, also in check
        # mode (where it cannot install it itself) on a host never converged.
        "python3-apt",
    ],
    "mirror": MIRROR,
    "security_mirror": SECURITY_MIRROR,
    # Units that need a real machine (devices, consoles); masked with links to /dev/null.
    "mask": [
        "systemd-udevd.service",
        "systemd-udevd-control.socket",
        "systemd-udevd-kernel.socket",
        "getty@.service",
        "console-getty.service",
    ],
}

# The single source of truth for lab images: key -> recipe.
RECIPES: dict[str, dict[str, Any]] = {
    "debian12": {**_BASE, "suite": "bookworm"},
    "debian13": {**_BASE, "suite": "trixie"},
}


def recipe_hash(recipe: dict[str, Any], kind_builder: Any = None) -> str:
    """First 12 hex digits of the sha256 of the canonical JSON of recipe + builder version.

    kind_builder: what a kind's own build steps add (their version, the files they install);
    None for the container images.
    """
    doc: dict[str, Any] = {"builder": BUILDER_VERSION, "recipe": recipe}
    if kind_builder is not None:
        doc["kind_builder"] = kind_builder
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def recipe(name: str) -> dict[str, Any]:
    """The recipe for an image key; a LabError naming the valid keys otherwise."""
    if name not in RECIPES:
        raise LabError(f"unknown image key {name!r}: choose one of {', '.join(sorted(RECIPES))}.")
    return RECIPES[name]


def image_tag(name: str, recipe_: dict[str, Any] | None = None) -> str:
    """fortress-lab/<name>:<recipe hash>."""
    return f"{REPOSITORY}/{name}:{recipe_hash(recipe_ if recipe_ is not None else recipe(name))}"


def ensure_image(name: str) -> str:
    """Build the image for `name` unless its tag exists; returns the tag."""
    tag = image_tag(name)
    try:
        client().images.get(tag)
    except docker.errors.ImageNotFound:
        _build(name, recipe(name), tag)
    else:
        say("image", f"image {tag} up to date")
    return tag


def ensure_images(names: list[str] | None = None) -> list[str]:
    """Build the missing images among `names` (default: all recipes), two at a time."""
    names = list(dict.fromkeys(names or RECIPES))
    for name in names:
        recipe(name)  # fail on a bad key before starting any build
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="image") as pool:
        return list(pool.map(ensure_image, names))


def _build(name: str, recipe_: dict[str, Any], tag: str) -> None:
    with building(name, recipe_, tag) as workdir:
        rootfs = workdir / "rootfs"
        build_rootfs(name, recipe_, rootfs)
        _import(rootfs, tag, tag.rsplit(":", 1)[1])
        _remove_older_tags(tag)


@contextmanager
def building(name: str, recipe_: dict[str, Any], what: str) -> Iterator[Path]:
    """A scratch directory for one build, deleted afterwards (with what a failed debootstrap
    left mounted in it); prints the start and, on success, the build time of `what`."""
    say("image", f"building {name} ({recipe_['suite']}) ...")
    started = time.monotonic()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=BUILD_DIR))
    try:
        yield workdir
    finally:
        _remove_tree(workdir)
    say("image", f"built {what} in {time.monotonic() - started:.0f} s")


def build_rootfs(
    name: str,
    recipe_: dict[str, Any],
    rootfs: Path,
    customize: Callable[[Path, dict[str, Any]], None] | None = None,
) -> None:
    """debootstrap the recipe into rootfs, apply the common customisation, then the kind's
    own (`customize`), then fetch the package lists of the final sources."""
    _debootstrap(name, recipe_, rootfs)
    _customize(rootfs, recipe_)
    if customize is not None:
        customize(rootfs, recipe_)
    _refresh_package_lists(rootfs)


def _debootstrap(name: str, recipe_: dict[str, Any], rootfs: Path) -> None:
    mirror = recipe_["mirror"]
    if apt_cache_up():
        mirror = mirror.replace("http://", "http://127.0.0.1:3142/", 1)
    argv = [
        "debootstrap",
        f"--variant={recipe_['variant']}",
        f"--include={','.join(recipe_['include'])}",
        recipe_["suite"],
        str(rootfs),
        mirror,
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=DEBOOTSTRAP_TIMEOUT
        )
    except FileNotFoundError as exc:
        raise LabError("debootstrap is not installed: run `make bootstrap` first.") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"debootstrap of {name} took longer than {DEBOOTSTRAP_TIMEOUT} s.") from exc
    if done.returncode != 0:
        log = rootfs / "debootstrap" / "debootstrap.log"
        detail = log.read_text(errors="replace") if log.is_file() else done.stderr or done.stdout
        raise LabError(
            f"debootstrap of {name} ({recipe_['suite']} from {mirror}) failed with exit code "
            f"{done.returncode}; last lines of {log if log.is_file() else 'its output'}:\n"
            f"{tail(detail, 15)}"
        )


def sources_stanza(rootfs: Path, uri: str, suites: str) -> str:
    """A deb822 sources stanza (main), signed by Debian's keyring when the tree has it."""
    keyring = rootfs / "usr/share/keyrings/debian-archive-keyring.gpg"
    signed_by = f"Signed-By: /{keyring.relative_to(rootfs)}\n" if keyring.is_file() else ""
    return f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\n{signed_by}"


def _customize(rootfs: Path, recipe_: dict[str, Any]) -> None:
    """Turn the debootstrap tree into a lab host tree (sources, identity, masked units)."""
    suite = recipe_["suite"]
    etc = rootfs / "etc"
    (etc / "apt/sources.list").write_text(
        "# Debian sources are in /etc/apt/sources.list.d/debian.sources\n"
    )
    (etc / "apt/sources.list.d/debian.sources").write_text(
        sources_stanza(rootfs, recipe_["mirror"], f"{suite} {suite}-updates")
        + "\n"
        + sources_stanza(rootfs, recipe_["security_mirror"], f"{suite}-security")
    )
    (etc / "machine-id").write_text("")
    (etc / "hostname").unlink(missing_ok=True)
    for unit in recipe_["mask"]:
        link = etc / "systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin"):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()


def _refresh_package_lists(rootfs: Path) -> None:
    """Package lists for the final sources, as a freshly installed server has them: check
    mode on a never-converged host needs them (apt cannot refresh in check mode)."""
    for path in (rootfs / "var/lib/apt/lists").glob("*"):
        if path.is_file() and path.name != "lock":
            path.unlink()
    chroot_apt(rootfs, "update", "-qq")


def chroot_apt(rootfs: Path, *args: str, timeout: float = 600) -> None:
    """Run apt-get ARGS in the tree (through the apt cache when it is up); LabError on failure."""
    argv = ["chroot", str(rootfs), "apt-get", *args]
    if apt_cache_up():
        argv += ["-o", f"Acquire::http::Proxy=http://127.0.0.1:{APT_CACHE_PORT}"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    if done.returncode != 0:
        raise LabError(
            f"apt-get {args[0]} in the new image failed: {tail(done.stderr or done.stdout, 10)}"
        )


def _import(rootfs: Path, tag: str, digest: str) -> None:
    # No STOPSIGNAL here: Docker 20.10 (Debian 12's engine) rejects it in `docker import`
    # ("stopsignal is not a valid change command"); the fleet sets it when it runs a host.
    changes = ['CMD ["/sbin/init"]', "ENV container=docker", f"LABEL io.fortress.recipe={digest}"]
    importer = ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", tag]
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as tar:
        done = subprocess.run(importer, stdin=tar.stdout, capture_output=True, text=True)
        assert tar.stdout is not None and tar.stderr is not None
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace")
    if tar.returncode != 0 or done.returncode != 0:
        raise LabError(f"importing {rootfs} as {tag} failed: {tail(tar_err + done.stderr, 5)}")


def _remove_older_tags(tag: str) -> None:
    repository = tag.rsplit(":", 1)[0]
    for image in client().images.list(name=repository):
        for old in image.tags:
            if old.startswith(f"{repository}:") and old != tag:
                try:
                    client().images.remove(old)
                    say("image", f"removed older {old}")
                except docker.errors.APIError as exc:
                    say("image", f"kept older {old}: {exc.explanation or exc}")


def _remove_tree(workdir: Path) -> None:
    """Delete a build directory, unmounting what a failed debootstrap left mounted in it."""
    inside = [m for m in mount_points() if Path(m).is_relative_to(workdir)]
    for mount in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)
    if any(Path(m).is_relative_to(workdir) for m in mount_points()):
        say("image", f"WARNING: kept {workdir}: it still has mounts in it (delete it by hand)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
