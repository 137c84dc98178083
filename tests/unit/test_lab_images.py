"""Lab image recipes: hashing, tags and the rootfs customisation (no Docker, no debootstrap)."""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fortress_lab import images
from fortress_lab.common import LabError


def test_recipe_hash_is_stable_and_ignores_key_order() -> None:
    recipe = images.RECIPES["debian12"]
    reordered = dict(reversed(list(copy.deepcopy(recipe).items())))
    assert images.recipe_hash(recipe) == images.recipe_hash(reordered)
    assert re.fullmatch(r"[0-9a-f]{12}", images.recipe_hash(recipe))


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(suite="sid"),
        lambda r: r["include"].append("vim"),
        lambda r: r["mask"].remove("getty@.service"),
        lambda r: r.update(mirror="http://example.invalid/debian"),
    ],
)
def test_recipe_hash_changes_with_the_recipe(change: Callable[[dict[str, Any]], object]) -> None:
    recipe = copy.deepcopy(images.RECIPES["debian12"])
    before = images.recipe_hash(recipe)
    change(recipe)
    assert images.recipe_hash(recipe) != before


def test_recipe_hash_changes_with_the_builder_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = images.recipe_hash(images.RECIPES["debian13"])
    monkeypatch.setattr(images, "BUILDER_VERSION", images.BUILDER_VERSION + 1)
    assert images.recipe_hash(images.RECIPES["debian13"]) != before


def test_tags() -> None:
    for name in ("debian12", "debian13"):
        digest = images.recipe_hash(images.RECIPES[name])
        assert images.image_tag(name) == f"fortress-lab/{name}:{digest}"
    assert images.image_tag("debian12") != images.image_tag("debian13")
    assert images.RECIPES["debian12"]["suite"] == "bookworm"
    assert images.RECIPES["debian13"]["suite"] == "trixie"


def test_unknown_key_names_the_valid_ones() -> None:
    with pytest.raises(LabError, match=r"unknown image key 'debian99'.*debian12, debian13"):
        images.image_tag("debian99")


def test_customize_turns_a_rootfs_into_a_container_tree(tmp_path: Path) -> None:
    for d in ("etc/apt/sources.list.d", "etc/systemd/system", "var/cache/apt/archives/partial"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "var/lib/apt/lists/partial").mkdir(parents=True)
    (tmp_path / "etc/hostname").write_text("builder\n")
    (tmp_path / "etc/machine-id").write_text("0123456789abcdef\n")
    (tmp_path / "var/cache/apt/archives/x.deb").write_text("deb")
    (tmp_path / "var/lib/apt/lists/deb_InRelease").write_text("index")

    images._customize(tmp_path, images.RECIPES["debian13"])

    sources = (tmp_path / "etc/apt/sources.list.d/debian.sources").read_text()
    assert "URIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\n" in sources
    assert "URIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n" in sources
    assert "3142" not in (tmp_path / "etc/apt/sources.list").read_text()
    assert (tmp_path / "etc/machine-id").read_text() == ""
    assert not (tmp_path / "etc/hostname").exists()
    for unit in images.RECIPES["debian13"]["mask"]:
        assert (tmp_path / "etc/systemd/system" / unit).readlink() == Path("/dev/null")
    assert not list((tmp_path / "var/cache/apt/archives").glob("*.deb"))
    # Package lists stay: _refresh_package_lists() replaces them with the final sources'.
    assert (tmp_path / "var/lib/apt/lists/deb_InRelease").exists()


def test_failed_debootstrap_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = tmp_path / "rootfs"
    log = rootfs / "debootstrap" / "debootstrap.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(40)))
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="E: see the log\n")
    monkeypatch.setattr(images, "apt_cache_up", lambda: False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(LabError) as info:
        images._debootstrap("debian12", images.RECIPES["debian12"], rootfs)
    message = str(info.value)
    assert message.startswith(
        "debootstrap of debian12 (bookworm from http://deb.debian.org/debian) failed"
    )
    assert "line 25\n" in message and message.endswith("line 39")
    assert "line 24\n" not in message
