"""plugins/module_utils/sandbox/runtime.py: the runtime proof (what the daemon says of its
runtime, the runsc-sandbox process's flags, and the binary it runs against the digests the
roles published)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    SandboxError,
    published_digests,
    runsc_sandbox_pids,
    runtime,
)


def test_runsc_sandbox_pids_match_the_container_id_only(tmp_path: Path) -> None:
    def proc(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    ours, other = "abc123" + "0" * 58, "999" * 21 + "9"
    proc(10, "runsc-sandbox", "--root=/run/runsc", "boot", ours)
    proc(11, "runsc-gofer", ours)  # not the sandbox
    proc(12, "sh", "-c", f"runsc-sandbox {ours}")  # mentions it, is not it
    proc(13, "runsc-sandbox", "boot", other)
    (tmp_path / "self").mkdir()
    assert runsc_sandbox_pids(ours, str(tmp_path)) == [10]
    assert runsc_sandbox_pids("0" * 64, str(tmp_path)) == []
    # A hostile daemon's "ID" that is a part of every ID (or not one at all) matches nothing.
    for hostile in ("", "9", "abc123", ours[:63], ours + "0", ours.upper(), None, 12):
        assert runsc_sandbox_pids(hostile, str(tmp_path)) == [], hostile


def _role_runtime_args() -> list[str]:
    """The runtime arguments the gvisor role renders with its defaults (debug runtime aside)."""
    roles = Path(__file__).resolve().parents[5] / "roles" / "gvisor"
    defaults = yaml.safe_load((roles / "defaults" / "main.yml").read_text())
    rendered = []
    for arg in yaml.safe_load((roles / "vars" / "main.yml").read_text())["__gvisor_common_args"]:
        rendered.append(jinja2.Template(arg).render(**defaults))
    return [*rendered, f"--network={defaults['gvisor_network']}", "--network=none"]


def test_the_gvisor_roles_runtime_flags_are_allowed_and_weakening_ones_refused() -> None:
    assert runtime.refused_runsc_flags(_role_runtime_args()) == []
    assert runtime.refused_runsc_flags(["--ignore-cgroups", "--network=host"]) == []
    weakening = [
        "--debug", "--strace", "--debug-log=/tmp/x/", "--host-uds=all", "--host-uds=open",
        "--net-raw", "--TESTONLY-unsafe-nonroot", "-debug", "--Host-uds=none", "--host-uds",
        "all", "--network=sandbox\0", "--platform=", "",
    ]  # fmt: skip
    assert runtime.refused_runsc_flags(weakening) == weakening
    for odd in ("--strace", None, {"--debug": True}, [1]):
        assert runtime.refused_runsc_flags(odd) != []


def test_a_runtime_is_checked_by_name_binary_and_flags() -> None:
    ok = {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": _role_runtime_args()}}
    runtime.check_runsc_runtime("runsc", ok)
    for name, runtimes, message in [
        ("runc", {"runc": {"path": "runc"}}, "not a runsc runtime"),
        ("runsc", {"runsc": {"path": "/usr/bin/runc"}}, "not a runsc runtime"),
        ("runsc", {"runsc": "/usr/bin/runsc"}, "not a runsc runtime"),
        ("runsc", None, "not a runsc runtime"),
        ("runsc", {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--strace"]}}, "--strace"),
    ]:
        with pytest.raises(SandboxError, match=message):
            runtime.check_runsc_runtime(name, runtimes)


# Docker runs a runtime that has runtimeArgs through a script it writes, unquoted:
# `#!/bin/sh\n<path> <args...> $@` (moby's wrapRuntime). A value or a path with whitespace or
# a shell character becomes more flags, or a command. Found by an attack review.
SPLIT_BY_THE_SHELL = [
    "--overlay2=root:memory --strace --debug --debug-log=/tmp/x/",
    "--overlay2=root:memory\t--net-raw",
    "--overlay2=$(id>/tmp/pwn)",
    "--overlay2=root:memory;--strace",
]


def test_a_flag_or_path_dockers_shell_wrapper_would_split_is_refused() -> None:
    for arg in SPLIT_BY_THE_SHELL:
        assert runtime.refused_runsc_flags([arg]) == [arg]
    for declared in (
        {"path": "/usr/bin/runsc --strace --debug --platform=/runsc", "runtimeArgs": []},
        {"path": "/usr/bin/runsc", "runtimeType": "io.containerd.runsc.v1",
         "options": {"ConfigPath": "/etc/containerd/runsc.toml"}},
    ):  # fmt: skip
        with pytest.raises(SandboxError, match="not a runsc runtime"):
            runtime.check_runsc_runtime("runsc", {"runsc": declared})
    runtime.check_runsc_runtime("runsc", {"runsc": {"path": "/usr/bin/runsc"}})  # control


# A runsc-sandbox command line as a lab host's outer daemon starts it (an egress runtime).
SANDBOX_ARGV = [
    b"runsc-sandbox", b"--log-format=json", b"--overlay2=root:memory", b"--host-uds=none",
    b"--network=host", b"--platform=systrap", b"--root=/var/run/docker/runtime-runc/moby",
    b"--log=/var/run/docker/containerd/daemon/x/log.json", b"--log-fd=3", b"boot",
    b"--apply-caps=false", b"--bundle=/b", b"--controller-fd=11", b"--cpu-num=2", b"c0ffee",
]  # fmt: skip


def test_a_sandbox_process_with_the_roles_flags_passes() -> None:
    assert runtime.refused_sandbox_flags(SANDBOX_ARGV) == []


@pytest.mark.parametrize(
    "flag",
    [b"--strace", b"--debug", b"--debug-log=/var/log/runsc/", b"--host-uds=all", b"--net-raw",
     b"--TESTONLY-unsafe-nonroot=true", b"--network=sandbox\x1b[2J"],
)  # fmt: skip
def test_a_sandbox_process_running_with_a_weakening_flag_is_refused(flag: bytes) -> None:
    """What the host sees the sandbox run with, whatever the daemon said of its runtime:
    a flag a wrapper around runsc added is refused (only flags before `boot` are runsc's
    global ones; boot's own are runsc's)."""
    argv = [*SANDBOX_ARGV[:2], flag, *SANDBOX_ARGV[2:]]
    refused = runtime.refused_sandbox_flags(argv)
    assert len(refused) == 1 and all(c.isprintable() for c in refused[0]), refused


def test_a_sandbox_process_without_boot_is_refused() -> None:
    assert runtime.refused_sandbox_flags([b"runsc-sandbox", b"--strace"]) != []


def test_a_flag_that_would_take_boot_as_its_value_is_refused() -> None:
    """`--root boot --strace boot ...`: Go's flag package reads root=boot, then --strace;
    a check that stopped at the first "boot" would see only --root."""
    argv = [b"runsc-sandbox", b"--root", b"boot", b"--strace", *SANDBOX_ARGV[1:]]
    assert runtime.refused_sandbox_flags(argv) == ["--root"]


# --- the binary a runsc-sandbox process runs ----------------------------------------------


def _digests(directory: Path, text: str, name: str = "gvisor.sha256") -> Path:
    directory.mkdir(mode=0o755, exist_ok=True)
    (directory / name).write_text(text)
    (directory / name).chmod(0o644)
    return directory / name


def test_the_published_digests_are_read_from_root_owned_files_only(tmp_path: Path) -> None:
    d = tmp_path / "runsc.d"
    good, other = "a" * 64, "0123456789abcdef" * 4
    _digests(d, f"{good}  /usr/bin/runsc\n# a comment\n{'A' * 64}  upper\nshort  x\n\n")
    _digests(d, f"{other}  /usr/bin/runsc\n", "outer-image-x.sha256")
    _digests(d, f"{'b' * 64}  not a .sha256 file\n", "notes.txt")
    assert published_digests(str(d)) == {good, other}
    (d / "outer-image-x.sha256").chmod(0o664)  # another user could have written it
    with pytest.raises(SandboxError, match="not root's alone"):
        published_digests(str(d))
    (d / "outer-image-x.sha256").unlink()
    (d / "outer-image-x.sha256").symlink_to(d / "gvisor.sha256")  # never followed
    with pytest.raises(SandboxError, match="cannot be read"):
        published_digests(str(d))
    (d / "outer-image-x.sha256").unlink()
    d.chmod(0o777)
    with pytest.raises(SandboxError, match="not root's alone"):
        published_digests(str(d))
    d.chmod(0o755)
    (d / "gvisor.sha256").write_text("# nothing\n")
    with pytest.raises(SandboxError, match="lists no runsc digest"):
        published_digests(str(d))
    with pytest.raises(SandboxError, match="no runsc digests can be read"):
        published_digests(str(tmp_path / "absent"))


def _running(binary: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(binary), "30"])
    deadline = time.monotonic() + 5
    while os.readlink(f"/proc/{proc.pid}/exe") != str(binary) and time.monotonic() < deadline:
        time.sleep(0.01)  # the fork runs Python until it execs
    return proc


def test_the_binary_a_process_runs_is_hashed_once_per_file_and_again_when_rewritten(
    tmp_path: Path,
) -> None:
    """The digest is of what the process runs, cached for a host daemon's sandboxes by
    device, inode, size, mtime and ctime: the same binary rewritten in place with its size
    and mtime put back (what root in an outer can do to a file between two sandboxes) is
    hashed again, not taken from the cache."""
    binary = tmp_path / "runsc"
    shutil.copy("/bin/sleep", binary)
    first = binary.read_bytes()
    proc = _running(binary)
    try:
        assert runtime.binary_digest(proc.pid, host=True) == hashlib.sha256(first).hexdigest()
        cached = (dict(runtime._FILES), dict(runtime._PROCESSES))
        assert runtime.binary_digest(proc.pid, host=True) == hashlib.sha256(first).hexdigest()
        assert (runtime._FILES, runtime._PROCESSES) == cached  # not hashed again
        with pytest.raises(OSError, match="Text file busy"):
            binary.open("r+b")  # a running binary cannot be rewritten under its process
    finally:
        proc.kill()
        proc.wait()
    before = binary.stat()
    changed = bytearray(first)
    changed[-1] ^= 0xFF  # the section headers' last byte: the kernel never reads it
    with binary.open("r+b") as f:
        f.write(changed)
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = binary.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns,
    )  # fmt: skip
    proc = _running(binary)
    try:
        assert runtime.binary_digest(proc.pid, host=True) == hashlib.sha256(changed).hexdigest()
        assert runtime.unpublished_binaries(
            [proc.pid], str(_published(tmp_path, first)), host=True
        ) == [hashlib.sha256(changed).hexdigest()]
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(SandboxError, match="is gone"):
        runtime.binary_digest(proc.pid)


def test_an_outers_runsc_on_a_filesystem_it_can_mount_is_never_taken_from_the_file_cache(
    tmp_path: Path,
) -> None:
    """Attack review: root in an outer mounts a filesystem of its own making (erofs from a
    plain file), whose metadata it chose, and presents a modified runsc under the device,
    inode, size, mtime and ctime of the genuine one hashed before. Such a mount has an
    anonymous device (major 0; here a tmpfs). The cache holds the genuine digest under the
    key of the file the process runs, as that attack leaves it: an outer's (host=False)
    sandbox is hashed from what it runs; a host daemon's would take it (red control), as
    would an outer's runsc on a block device's filesystem (its image's layers on the host's
    disk), which root in an outer cannot mount."""
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        for where, by_file in ((shm, False), (tmp_path, True)):
            binary = where / "runsc"
            shutil.copy("/bin/sleep", binary)
            proc = _running(binary)
            st = os.stat(f"/proc/{proc.pid}/exe")
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            assert (os.major(st.st_dev) != 0) is by_file, (where, st.st_dev)
            try:
                runtime._FILES[key] = "genuine-" + "0" * 56
                real = hashlib.sha256(binary.read_bytes()).hexdigest()
                taken = runtime.binary_digest(proc.pid, host=False)
                assert taken == (runtime._FILES[key] if by_file else real), where
                runtime._PROCESSES.clear()
                assert runtime.binary_digest(proc.pid, host=True) == runtime._FILES[key]
            finally:
                runtime._FILES.pop(key, None)
                runtime._PROCESSES.clear()
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(shm)


def _published(tmp_path: Path, *binaries: bytes) -> Path:
    lines = "".join(f"{hashlib.sha256(b).hexdigest()}  runsc\n" for b in binaries)
    _digests(tmp_path / "published", lines)
    return tmp_path / "published"


def test_a_process_running_a_published_binary_passes(tmp_path: Path) -> None:
    binary = tmp_path / "runsc"
    shutil.copy("/bin/sleep", binary)
    proc = _running(binary)
    try:
        published = _published(tmp_path, binary.read_bytes())
        assert runtime.unpublished_binaries([proc.pid], str(published)) == []
    finally:
        proc.kill()
        proc.wait()
