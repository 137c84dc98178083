"""The outer image archive for lab hosts and CI: built once on this machine with the
outer_sandbox role's own build script (one implementation of the outer image), saved with
`docker save`, and loaded by the role on each lab host (outer_sandbox_image_source: archive).
"""

from __future__ import annotations

import hashlib
import subprocess

from .common import APT_CACHE_PORT, REPO_ROOT, STATE_DIR, LabError, apt_cache_up, say, tail

BUILD_SCRIPT = REPO_ROOT / "roles" / "outer_sandbox" / "files" / "build-outer-image.sh"
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
# What inventories/lab/group_vars name: outer_sandbox_image, _tag and _archive.
IMAGE = "fortress/outer:lab"
ARCHIVE = STATE_DIR / "images" / "fortress-outer.tar"
BUILD_TIMEOUT = 1800


def recipe_digest() -> str:
    """Changes whenever the build script or the suite changes."""
    return hashlib.sha256(BUILD_SCRIPT.read_bytes() + SUITE.encode()).hexdigest()[:12]


def ensure_outer_archive() -> str:
    """Build and save the outer image unless the archive matches the current recipe."""
    stamp = ARCHIVE.with_suffix(".recipe")
    digest = recipe_digest()
    if ARCHIVE.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        say("image", f"outer image archive {ARCHIVE} up to date ({digest})")
        return str(ARCHIVE)
    ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    argv = ["bash", str(BUILD_SCRIPT), IMAGE, SUITE, MIRROR]
    if apt_cache_up():
        argv.append(f"http://127.0.0.1:{APT_CACHE_PORT}")
    _run(argv, "building the outer image")
    partial = ARCHIVE.with_suffix(".partial")
    _run(["docker", "save", "-o", str(partial), IMAGE], "saving the outer image")
    partial.replace(ARCHIVE)
    stamp.write_text(digest + "\n")
    say("image", f"outer image archive {ARCHIVE} written ({digest})")
    return str(ARCHIVE)


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what} took longer than {BUILD_TIMEOUT} s.") from exc
    for line in done.stdout.splitlines():
        say("image", line.removeprefix("[outer-image] "))
    if done.returncode != 0:
        raise LabError(f"{what} failed: {tail(done.stderr or done.stdout, 10)}")
