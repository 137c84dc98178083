"""Shared pieces of the lab tooling: the error type, paths, the Docker client, the apt cache."""

from __future__ import annotations

import functools
import http.client
import importlib
import os
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import docker
import docker.errors

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("FORTRESS_STATE_DIR", "/var/lib/fortress-lab"))
APT_CACHE_PORT = 3142
LABEL_LAB = "io.fortress.lab"
LABEL_IMAGE = "io.fortress.lab.image"

_lock = threading.RLock()
COLLECTION = "ansible_collections.fortress.agents"


def collection_on_path() -> None:
    """Make this checkout importable as the collection it is (ansible_collections.fortress.
    agents), the way Ansible imports it: collections/ansible_collections/fortress/agents, the
    link scripts/bootstrap.sh makes (made here too when missing), put on sys.path. The
    ansible package's own ansible_collections is a namespace package, so both are seen."""
    base = REPO_ROOT / "collections"
    link = base / "ansible_collections" / "fortress" / "agents"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("../../..")
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))


def contract() -> Any:
    """plugins/module_utils/sandbox/contract.py: the labels and prefixes the lab checks."""
    collection_on_path()
    return importlib.import_module(f"{COLLECTION}.plugins.module_utils.sandbox.contract")


class LabError(Exception):
    """A lab operation failed; the message is one sentence that says why and what to do."""


def say(tag: str, message: str) -> None:
    """Print one progress line (safe from several threads)."""
    with _lock:
        print(f"[{tag}] {message}", file=sys.stdout, flush=True)


@functools.cache
def client() -> docker.DockerClient:
    """The machine's Docker engine; a LabError with the fix when it does not answer."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        raise LabError(
            f"cannot reach the local Docker engine at {where}: run `make bootstrap` "
            "(or `bash scripts/bootstrap.sh`) first."
        ) from exc
    return engine


def apt_cache_up() -> bool:
    """True when the local apt-cacher-ng answers on :3142 and really serves deb.debian.org.

    Answering is not enough: an apt-cacher-ng whose Debian backend does not resolve here
    (its default backends_debian names ftp.debian.org) answers every request with 503.
    Checked once per process.
    """
    with _lock:
        return _apt_cache_check()


@functools.cache
def _apt_cache_check() -> bool:
    url = f"http://127.0.0.1:{APT_CACHE_PORT}/deb.debian.org/debian/dists/stable/Release.gpg"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15):
            return True
    except (OSError, http.client.HTTPException) as exc:
        say("apt-cache", f"not using the apt cache on :{APT_CACHE_PORT} ({exc})")
        return False


def tail(text: str, lines: int) -> str:
    """The last `lines` lines of text, stripped."""
    return "\n".join(text.strip().splitlines()[-lines:])
