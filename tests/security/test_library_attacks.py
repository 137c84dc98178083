"""Attacks on the sandbox library's host side (issue 16), made the way a hijacked agent in a
sandbox or root in an outer container would make them, against the real engine and real
runsc sandboxes on the shared lab host (tests/conftest.py: sandbox_lab).

- copy out through names the sandbox planted in its writable workspace (a symlinked
  temporary name; a dest symlinked into another tenant's workspace);
- copy in while a sandbox races renames in its workspace: the library's host-side read,
  run as root on the lab host 20,000 times within 30 s, must never return a byte of a file
  outside the workspace root; a FIFO must not hang it and a size cap must hold;
- a hostile daemon behind the socket announcing a gigantic stream frame;
- secrets passed through env, stdin and file content must not appear in any module result,
  diff, label or audit line (the canary harness), and a 4-digit env PIN must not be
  recoverable offline from the spec fingerprint label;
- one planted malformed expiry label must not stop the reaper, and a sandbox recreated
  under a reaped name must not be removed;
- a TTL above the host's maximum and a mode that is not octal are refused.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fortress_lab import adversary as adv
from fortress_lab.canary import Canary
from fortress_lab.hostile_daemon import digests_of, frame, hostile_daemon
from fortress_lab.playbook import run_module, run_playbook
from fortress_lab.pytest_plugin import reaper_paused

HOST = "fortress-pytest-sandbox-1"  # tests/conftest.py: sandbox_lab
ROOT = "/var/lib/fortress/workspaces"
IMAGE = adv.IMAGE
FOREVER = ["/bin/sh", "-c", "sleep 2147483647"]
lib = adv.load_library()


@pytest.fixture(scope="module")
def host(sandbox_lab: Path) -> adv.LabHost:
    return adv.LabHost(HOST)


@pytest.fixture(scope="module")
def inventory(sandbox_lab: Path) -> Path:
    return sandbox_lab


def module(inventory: Path, name: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return run_module(inventory, HOST, name, args, **kw)


@contextmanager
def workspace_sandbox(
    inventory: Path, host: adv.LabHost, name: str, ws: str, command: list[str] = FOREVER
) -> Iterator[str]:
    """A runsc sandbox on the lab host's dockerd whose workspace ws (made writable for its
    user, nobody) is mounted read-write at /work: the attacker."""
    host.sh(f"rm -rf {ws} && mkdir -p {ws} && chmod 0777 {ws}")
    made = module(inventory, "sandbox", {
        "name": name, "image": IMAGE, "command": command,
        "mounts": [{"source": ws, "target": "/work", "read_only": False}],
    })  # fmt: skip
    assert not made.get("failed"), made
    try:
        yield name
    finally:
        module(inventory, "sandbox", {"name": name, "state": "absent"})
        host.sh(f"rm -rf {ws}")


def sandbox_sh(inventory: Path, name: str, script: str) -> dict[str, Any]:
    done = module(inventory, "sandbox_exec", {"name": name, "cmd": script})
    assert not done.get("failed"), done
    return done


# --- copy out -----------------------------------------------------------------------------


def test_copy_out_never_writes_through_a_name_the_sandbox_planted(
    inventory: Path, host: adv.LabHost
) -> None:
    ws, other = f"{ROOT}/attack-out", f"{ROOT}/attack-other-tenant"
    victim = "/var/lib/fortress/attack-victim"
    host.sh(f"mkdir -p {other} && echo TENANT > {other}/secret && echo ORIGINAL > {victim}")
    try:
        with workspace_sandbox(inventory, host, "attack-out", ws) as box:
            # The sandbox plants a symlink at the temporary name the module would write, and
            # makes a dest name a symlink into another tenant's workspace (inside the root).
            sandbox_sh(inventory, box, (
                f"ln -s {victim} /work/report.json.fortress-partial && "
                "ln -s ../attack-other-tenant/secret /work/other.json && "
                "ln -s ../attack-other-tenant/secret.fortress-partial "
                "/work/other.json.fortress-partial && echo PWNED > /tmp/payload"
            ))  # fmt: skip
            for dest in ("report.json", "other.json"):
                module(inventory, "sandbox_copy", {
                    "name": box, "direction": "out", "src": "/tmp/payload",
                    "dest": f"{ws}/{dest}",
                })  # fmt: skip
            assert host.sh(f"cat {victim}") == "ORIGINAL"
            assert host.sh(f"cat {other}/secret; ls {other}") == "TENANT\nsecret"
            # The copies landed as regular files in the workspace itself.
            for dest in ("report.json", "other.json"):
                assert (
                    host.sh(f"test -f {ws}/{dest} && ! test -L {ws}/{dest} && cat {ws}/{dest}")
                    == "PWNED"
                )
    finally:
        host.sh(f"rm -rf {other} {victim}")


# --- mounts -------------------------------------------------------------------------------

# Runs as root on the lab host: the library creates a sandbox whose mount source is a
# directory in another sandbox's writable workspace. Right before the create request goes to
# Docker (after every check the library makes), the attacker sandbox swaps that directory for
# a symlink to a host directory outside the workspace root: the sandbox made then must see
# the directory that was checked, or be refused; never the host directory.
MOUNT_SWAP = """
import json, subprocess, sys
sys.path.insert(0, "/usr/local/lib/fortress")
import sandbox as lib
import docker.models.containers as models
attacker, ws, victim, image = sys.argv[1:5]
real_create = models.ContainerCollection.create

def create(self, *args, **kwargs):
    subprocess.run(["docker", "exec", attacker, "sh", "-c",
                    "mv /work/sub /work/sub.real && ln -s " + victim + " /work/sub"], check=True)
    return real_create(self, *args, **kwargs)

models.ContainerCollection.create = create
boxes = lib.Sandboxes()
spec = lib.SandboxSpec(image=image, name="attack-mount-victim",
                       command=["/bin/sh", "-c", "sleep 2147483647"],
                       mounts=[lib.Mount(ws + "/sub", "/mnt")])
try:
    boxes.create(spec)
    seen = boxes.exec("attack-mount-victim", ["/bin/sh", "-c", "cat /mnt/*"]).stdout
except lib.SandboxError as exc:
    seen = "refused: " + str(exc)
finally:
    boxes.remove("attack-mount-victim")
print(json.dumps({"seen": seen}))
"""


def test_a_mount_source_swapped_for_a_symlink_after_the_check_is_not_followed(
    inventory: Path, host: adv.LabHost
) -> None:
    ws, victim = f"{ROOT}/attack-mount", "/var/lib/fortress/attack-mount-secret"
    host.sh(f"mkdir -p {victim} && echo OUTSIDE > {victim}/secret")
    mounts = "grep -c ' /run/fortress/mounts' /proc/self/mountinfo"
    try:
        with workspace_sandbox(inventory, host, "attack-mount", ws) as box:
            sandbox_sh(inventory, box, "mkdir /work/sub && echo CHECKED > /work/sub/ok")
            out = host.sh(f"python3 -c {shlex.quote(MOUNT_SWAP)} {box} {ws} {victim} {IMAGE} 2>&1")
            seen = json.loads(out.splitlines()[-1])["seen"]
            # The sandbox got what the library checked; its staged mount went with it (the
            # attacker's own stays until it is removed).
            assert "OUTSIDE" not in seen, f"the sandbox got the host directory: {out}"
            assert seen.strip() == "CHECKED", out
            assert host.sh(mounts) == "1", host.sh("cat /proc/self/mountinfo")
        assert host.sh(mounts) == "0", host.sh("cat /proc/self/mountinfo")
    finally:
        host.sh(f"rm -rf {victim}")


def test_the_staged_mount_of_a_sandbox_removed_behind_the_librarys_back_is_swept(
    inventory: Path, host: adv.LabHost
) -> None:
    """docker rm (not the library) leaves the staged mount; the reaper's next run, once the
    token is past its grace period, releases it and nothing else."""
    ws = f"{ROOT}/attack-sweep"
    mounts = "grep -c ' /run/fortress/mounts' /proc/self/mountinfo"
    with workspace_sandbox(inventory, host, "attack-sweep", ws):
        labels = json.loads(host.sh("docker inspect -f '{{json .Config.Labels}}' attack-sweep"))
        token = labels[lib.LABEL_MOUNTS]
        assert len(token) == 32, token
        host.sh("docker rm -f attack-sweep")
        assert host.sh(mounts) == "1"
        reaped = module(inventory, "sandbox_reap", {})
        assert not reaped.get("failed"), reaped
        assert host.sh(mounts) == "1", "a token within its grace period was released"
        host.sh(f"touch -d '1 hour ago' /run/fortress/mounts/{token}")
        module(inventory, "sandbox_reap", {})
        assert host.sh(mounts) == "0", host.sh("cat /proc/self/mountinfo")
        assert host.sh(f"ls /run/fortress/mounts/{token} 2>&1 || echo gone").endswith("gone")


# Runs as root on the lab host (the review of e52ca94): a caller's label forging another
# sandbox's staged-mounts token, and a stopped sandbox started again once its staged mount is
# gone (a reboot empties /run): neither may cost the victim its workspace or give it a
# directory Docker made.
FORGE_AND_RESTART = """
import json, os, sys
sys.path.insert(0, "/usr/local/lib/fortress")
import sandbox as lib
ws, image = sys.argv[1:3]
boxes = lib.Sandboxes()
forever = ["/bin/sh", "-c", "sleep 2147483647"]
victim = boxes.create(lib.SandboxSpec(image=image, name="attack-forge-victim", command=forever,
                                      mounts=[lib.Mount(ws, "/w")]))
token = victim.labels[lib.LABEL_MOUNTS]
staged = os.path.join(lib.STAGING_ROOT, token, "0")
seen = {}
try:
    try:
        boxes.create(lib.SandboxSpec(image=image, name="attack-forger", command=forever,
                                     labels={lib.LABEL_MOUNTS: token}))
        boxes.remove("attack-forger")
        seen["forger"] = "created and removed"
    except lib.SandboxError as exc:
        seen["forger"] = "refused: " + str(exc)
    seen["victim_still_staged"] = os.path.ismount(staged)
    seen["victim_sees"] = boxes.exec("attack-forge-victim", ["ls", "/w"]).stdout.strip()
    victim.stop()
    lib.mounts.release(token)  # what a reboot does to /run
    try:
        boxes.start(victim)
        seen["restart"] = "started, /w: " + boxes.exec("attack-forge-victim", ["ls", "/w"]).stdout
    except lib.SandboxError as exc:
        seen["restart"] = "refused: " + str(exc)
    seen["docker_made_the_source"] = os.path.exists(staged)
finally:
    for name in ("attack-forger", "attack-forge-victim"):
        try:
            boxes.remove(name)
        except lib.SandboxError:
            pass
print(json.dumps(seen))
"""


def test_a_forged_mounts_label_or_a_lost_staged_mount_never_costs_a_workspace(
    inventory: Path, host: adv.LabHost
) -> None:
    ws = f"{ROOT}/attack-forge"
    host.sh(f"mkdir -p {ws} && echo mine > {ws}/ok")
    try:
        out = host.sh(f"python3 -c {shlex.quote(FORGE_AND_RESTART)} {ws} {IMAGE} 2>&1")
        seen = json.loads(out.splitlines()[-1])
    finally:
        host.sh(f"rm -rf {ws}")
    assert seen["forger"].startswith("refused: ") and "reserved" in seen["forger"], seen
    assert seen["victim_still_staged"] and seen["victim_sees"] == "ok", seen
    assert seen["restart"].startswith("refused: ") and "create it again" in seen["restart"], seen
    assert not seen["docker_made_the_source"], seen
    assert host.sh("grep -c ' /run/fortress/mounts' /proc/self/mountinfo") == "0"
    assert host.sh(f"stat -c %a {lib.STAGING_ROOT}") == "700"


def test_a_mount_through_an_outers_socket_is_refused_in_one_sentence(
    inventory: Path, host: adv.LabHost
) -> None:
    """The outer's daemon would resolve the host path inside the outer (where it names
    whatever root in the outer put there): refused before anything is created."""
    ws = f"{ROOT}/attack-outer-mount"
    host.sh(f"mkdir -p {ws}")
    try:
        done = module(inventory, "sandbox", {
            "name": "attack-outer-mount", "image": IMAGE, "command": FOREVER,
            "docker_socket": f"/run/fortress/outer/{host.outer}/docker.sock",
            "mounts": [{"source": ws, "target": "/work"}],
        })  # fmt: skip
        assert done.get("failed"), done
        assert "another mount namespace" in done["msg"], done["msg"]
        assert done["msg"].count(". ") == 0, done["msg"]  # one sentence
        listed = module(inventory, "sandbox_info", {
            "docker_socket": f"/run/fortress/outer/{host.outer}/docker.sock",
        })  # fmt: skip
        assert "attack-outer-mount" not in json.dumps(listed), listed
    finally:
        module(inventory, "sandbox", {
            "name": "attack-outer-mount", "state": "absent",
            "docker_socket": f"/run/fortress/outer/{host.outer}/docker.sock",
        })  # fmt: skip
        host.sh(f"rm -rf {ws}")


# --- copy in ------------------------------------------------------------------------------

# Runs as root on the lab host with the library site.yml installed there: the host-side read
# that sandbox_copy direction=in does, called in a tight loop while the sandbox races.
RACE_READER = """
import json, sys, time
sys.path.insert(0, "/usr/local/lib/fortress")
import sandbox as lib
root, path = sys.argv[1], sys.argv[2]

def read(path):
    return lib.hostfs.read_file(root, path, 1 << 20)

seen = {"inside": 0, "outside": 0, "refused": 0}
began = time.monotonic()
calls = 0
while calls < 20000 and time.monotonic() - began < 30:
    calls += 1
    try:
        data = read(path)
    except (lib.SandboxError, OSError):
        seen["refused"] += 1
        continue
    seen["outside" if data.startswith(b"OUTSIDE") else "inside"] += 1
print(json.dumps({**seen, "calls": calls, "seconds": round(time.monotonic() - began, 1)}))
"""
# In the sandbox: d/f alternates between a regular file and a symlink to a file outside the
# workspace root, each swap one atomic rename.
RACER = (
    "cd /work && mkdir -p d && echo inside > d/f && while :; do "
    "ln -s ../../../attack-race-secret/f d/g; mv -f d/g d/f; echo inside > d/h; mv -f d/h d/f; "
    "done"
)


def test_copy_in_never_reads_outside_the_root_while_a_sandbox_races_renames(
    inventory: Path, host: adv.LabHost
) -> None:
    ws, secret = f"{ROOT}/attack-race", "/var/lib/fortress/attack-race-secret"
    host.sh(f"mkdir -p {secret} && echo OUTSIDE > {secret}/f")
    try:
        with workspace_sandbox(inventory, host, "attack-race", ws, ["/bin/sh", "-c", RACER]):
            host.sh(f"for i in $(seq 100); do test -e {ws}/d/f && break; sleep 0.1; done")
            out = host.sh(f"python3 -c {shlex.quote(RACE_READER)} {ROOT} {ws}/d/f")
            seen = json.loads(out.splitlines()[-1])
    finally:
        host.sh(f"rm -rf {secret}")
    assert seen["calls"] == 20000, seen  # 20,000 calls within 30 s
    assert seen["inside"] > 100, seen  # the read still works while the sandbox races
    assert seen["outside"] == 0, f"read a file outside the workspace root: {seen}"


FIFO_READER = """
import sys
sys.path.insert(0, "/usr/local/lib/fortress")
import sandbox as lib
try:
    lib.hostfs.read_file(sys.argv[1], sys.argv[2], 1 << 20)
    print("read")
except lib.SandboxError as exc:
    print(exc)
"""


def test_copy_in_reads_only_a_regular_file_within_its_size_cap(
    inventory: Path, host: adv.LabHost
) -> None:
    ws = f"{ROOT}/attack-fifo"
    with workspace_sandbox(inventory, host, "attack-fifo", ws) as box:
        # A FIFO in the workspace (made by the sandbox where gVisor lets it, else by hand):
        # opening it for reading would wait for a writer forever.
        sandbox_sh(inventory, box, "mkfifo /work/pipe || true")
        host.sh(f"test -p {ws}/pipe || mkfifo {ws}/pipe")
        out = host.sh(
            f"timeout 10 python3 -c {shlex.quote(FIFO_READER)} {ROOT} {ws}/pipe; echo rc=$?"
        )
        assert "rc=124" not in out, "reading a FIFO in the workspace hung the host-side read"
        assert "not a regular file" in out, out
        host.sh(f"head -c 4096 /dev/zero > {ws}/big")
        big = module(inventory, "sandbox_copy", {
            "name": box, "src": f"{ws}/big", "dest": "/tmp/big", "max_size": 1024,
        })  # fmt: skip
        assert big.get("failed") and "larger than 1024 bytes" in big["msg"], big


# --- a hostile daemon -----------------------------------------------------------------------


def test_a_hostile_daemon_announcing_a_huge_frame_is_refused_in_bounded_memory(
    tmp_path: Path,
) -> None:
    def stream() -> Iterator[bytes]:
        yield frame(1, 2**31)  # "two gigabytes of stdout follow"
        for _ in range(256):  # 16 MiB of them do
            yield b"A" * 65536

    sock = tmp_path / "docker.sock"
    with hostile_daemon(sock, stream):
        boxes = lib.Sandboxes(
            socket_path=str(sock), check=False, audit_log=None, fingerprint_key=None,
            runsc_digests=digests_of(sock),
        )  # fmt: skip
        tracemalloc.start()
        try:
            with pytest.raises(lib.SandboxError, match="announced a stream frame of 2147483648"):
                boxes.exec("victim", ["true"], timeout=20, max_output=65536)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 4 * 2**20, f"the library held {peak} bytes of a hostile stream"


# --- secrets --------------------------------------------------------------------------------


def test_a_canary_secret_in_env_stdin_and_content_appears_nowhere(
    inventory: Path, host: adv.LabHost
) -> None:
    # One canary per way in: Ansible masks every copy of a no_log value in a result, so one
    # shared value would hide a channel that leaks on its own.
    env, stdin, content = Canary(), Canary(), Canary()
    tasks = [
        {"name": "create", "fortress.agents.sandbox": {
            "name": "canary-box", "image": IMAGE, "command": FOREVER,
            "env": {"TOKEN": env.value}}},
        {"name": "exec", "fortress.agents.sandbox_exec": {
            "name": "canary-box", "cmd": "cat >/dev/null; echo done", "stdin": stdin.value,
            "env": {"TOKEN": env.value}}},
        {"name": "one-shot", "fortress.agents.sandbox_exec": {
            "image": IMAGE, "cmd": "cat >/dev/null; echo done", "stdin": stdin.value,
            "env": {"TOKEN": env.value}}},
        {"name": "content", "fortress.agents.sandbox_copy": {
            "name": "canary-box", "content": content.value, "dest": "/tmp/secret",
            "mode": "0400"}},
        {"name": "info", "fortress.agents.sandbox_info": {"owner": "unknown"}},
        {"name": "again", "fortress.agents.sandbox": {
            "name": "canary-box", "image": IMAGE, "command": FOREVER,
            "env": {"TOKEN": env.value + "-rotated"}}},
    ]  # fmt: skip
    play = inventory.parent / "play-canary.yml"
    play.write_text(json.dumps([{"hosts": HOST, "gather_facts": False, "tasks": tasks}]))
    try:
        run = run_playbook(inventory, playbook=play, diff=True)
        assert run.rc == 0, run.output[-3000:]
        labels = host.sh("docker inspect -f '{{json .Config.Labels}}' canary-box")
    finally:
        module(inventory, "sandbox", {"name": "canary-box", "state": "absent"})
    audit = host.sh("cat /var/log/fortress/sandbox-audit.log*")
    assert "canary-box" in audit  # the audit log was written, and is what is searched
    texts = {"results_and_diffs": run.output, "labels": labels, "audit_log": audit}
    leaks = {name: c.leaks(**texts) for name, c in (("env", env), ("stdin", stdin),
                                                    ("content", content))}  # fmt: skip
    assert leaks == {"env": [], "stdin": [], "content": []}


def test_a_four_digit_env_pin_is_not_recoverable_from_the_fingerprint_label(
    inventory: Path,
) -> None:
    fields = {"image": IMAGE, "command": FOREVER, "owner": "pin-test"}
    made = module(inventory, "sandbox", {"name": "pin-box", "env": {"PIN": "4821"}, **fields})
    try:
        label = made["sandbox"]["fingerprint"]
        assert label, made
        # What anyone who can list containers (sandbox_info) or read a --diff can do:
        # recompute the label for every PIN, without the host's key.
        found = [
            pin for pin in (f"{n:04d}" for n in range(10000))
            if lib.SandboxSpec(env={"PIN": pin}, **fields).fingerprint() == label
        ]  # fmt: skip
    finally:
        module(inventory, "sandbox", {"name": "pin-box", "state": "absent"})
    assert found == [], f"the fingerprint label gives the PIN away: {found}"


# --- reaper ---------------------------------------------------------------------------------


def test_one_malformed_expiry_label_does_not_stop_the_reaper_and_removal_is_by_id(
    host: adv.LabHost,
) -> None:
    docker = host.docker()
    boxes = lib.Sandboxes(
        socket_path=f"{host.root}/run/docker.sock", check=False, audit_log=None,
        fingerprint_key=None,
    )  # fmt: skip

    def planted(name: str, expires: str) -> Any:
        labels = {lib.LABEL: "1", lib.LABEL_OWNER: "attack", lib.LABEL_EXPIRES: expires}
        return docker.containers.create(IMAGE, FOREVER, name=name, labels=labels)

    with reaper_paused(host.sh):
        try:
            planted("attack-bad-label", "tomorrow")  # what root in an outer can plant
            planted("attack-expired", "1")
            reaped = boxes.reap()
            assert "attack-expired" in reaped and "attack-bad-label" not in reaped, reaped
            names = {c.name for c in docker.containers.list(all=True)}
            assert "attack-bad-label" in names and "attack-expired" not in names
            # A listing taken, then the sandbox recreated under its name before the removal.
            planted("attack-same", "1")
            stale = boxes.list()
            docker.containers.get("attack-same").remove(force=True)
            planted("attack-same", "99999999999")
            boxes.list = lambda **_: stale  # type: ignore[method-assign]
            boxes.reap()
            assert docker.containers.get("attack-same").labels[lib.LABEL_EXPIRES] == "99999999999"
        finally:
            for name in ("attack-bad-label", "attack-expired", "attack-same"):
                host.sh(f"docker rm -f {name} >/dev/null 2>&1 || true")


# --- bounds on caller input -------------------------------------------------------------------


def test_a_ttl_above_the_maximum_and_a_mode_that_is_not_octal_are_refused(
    inventory: Path, host: adv.LabHost
) -> None:
    long = module(inventory, "sandbox", {
        "name": "attack-ttl", "image": IMAGE, "command": FOREVER, "ttl": 10**9,
    })  # fmt: skip
    assert long.get("failed") and "longer than this host allows" in long["msg"], long
    assert "attack-ttl" not in host.sh("docker ps -a --format '{{.Names}}'")
    module(inventory, "sandbox", {"name": "attack-mode", "image": IMAGE, "command": FOREVER})
    try:
        bad = module(inventory, "sandbox_copy", {
            "name": "attack-mode", "content": "x", "dest": "/tmp/x", "mode": "+t",
        })  # fmt: skip
        assert bad.get("failed") and "octal" in bad["msg"], bad
    finally:
        module(inventory, "sandbox", {"name": "attack-mode", "state": "absent"})


# --- an exec that always ends; nothing of the caller's before the runtime is proven ---------

# Each leaves a `sleep 424N` behind the way the findings describe; the marker and full-/tmp
# cases attack the old shell wrapper's PID file in the shared /tmp.
ESCAPES = {
    "double-forked": "(sleep 4241 &)",
    "setsid": "setsid sleep 4242 &",
    "a name with spaces": "printf '#!/bin/sh\\nexec sleep 4243\\n' > '/work/a b' && "
    "chmod +x '/work/a b' && ('/work/a b' &)",
    "marker rewritten": 'for m in /tmp/.fortress-exec-*; do echo 1 > "$m"; done; (sleep 4244 &)',
    "full /tmp": "dd if=/dev/zero of=/tmp/fill bs=1M 2>/dev/null; (sleep 4245 &)",
}


def status_of(inventory: Path, name: str) -> str | None:
    found = module(inventory, "sandbox_info", {})["sandboxes"]
    return next((s["status"] for s in found if s["name"] == name), None)


def survivors(inventory: Path, name: str) -> list[str]:
    ps = module(inventory, "sandbox_exec", {"name": name, "argv": ["ps", "-o", "stat,args"]})
    assert not ps.get("failed"), ps
    return [line for line in ps["stdout"].splitlines()
            if ("sleep 424" in line or "a b" in line) and not line.startswith("Z")]  # fmt: skip


def test_a_timed_out_exec_leaves_no_process_however_it_hid(
    inventory: Path, host: adv.LabHost
) -> None:
    """Every way a command hides a child (double fork, setsid, a name with spaces, rewriting
    or crowding out the wrapper's bookkeeping) and then outlives its timeout: nothing it
    started may survive, and the sandbox goes on serving."""
    with workspace_sandbox(inventory, host, "attack-escape", f"{ROOT}/attack-escape") as box:
        script = "\n".join([*ESCAPES.values(), "exec sleep 999"])
        done = module(inventory, "sandbox_exec", {"name": box, "cmd": script, "timeout": 3})
        assert done["failed"] and done["timed_out"], done
        assert survivors(inventory, box) == [], "processes outlived the exec's timeout"


def test_an_exec_that_leaves_a_process_behind_says_escaped_and_stops_its_sandbox(
    inventory: Path, host: adv.LabHost
) -> None:
    """A command that exits at once but leaves a hidden child running: the result says so,
    the child is dead and the sandbox is stopped (nothing vouches for what else it did).
    Control: the same command without the child leaves the sandbox running."""
    with workspace_sandbox(inventory, host, "attack-left", f"{ROOT}/attack-left") as box:
        clean = module(inventory, "sandbox_exec", {"name": box, "cmd": "sleep 0.1; echo ok"})
        assert not clean.get("failed") and clean["escaped"] is False, clean
        left = module(inventory, "sandbox_exec", {"name": box, "cmd": ESCAPES["double-forked"]})
        assert left["failed"] and left["escaped"] and left["rc"] == 0, left
        assert "was stopped" in left["msg"], left["msg"]
        assert status_of(inventory, box) == "exited"


# A child that leaves the session, then ends its main thread while another thread goes on
# writing: /proc shows it as a zombie, but it is alive (found by the attack review of the
# init; a /proc walk that skips zombies misses it and all it forks).
THREAD_LEADER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
static void *beat(void *path) {
    for (;;) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        dprintf(fd, "alive %d\n", getpid());
        close(fd);
        usleep(200000);
    }
}
int main(int argc, char **argv) {
    if (argc < 2 || fork()) return 0;
    setsid();
    pthread_t thread;
    pthread_create(&thread, 0, beat, argv[1]);
    syscall(SYS_exit, 0);
}
"""


def test_a_child_whose_main_thread_ended_while_another_runs_is_found_escaped(
    inventory: Path, host: adv.LabHost, tmp_path: Path
) -> None:
    """The child looks dead in /proc (a zombie leader) while its thread keeps writing: the
    exec says escaped and the sandbox is stopped, so the thread stops writing."""
    source, binary = tmp_path / "leader.c", tmp_path / "leader"
    source.write_text(THREAD_LEADER)
    subprocess.run(["musl-gcc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    ws = f"{ROOT}/attack-leader"
    with workspace_sandbox(inventory, host, "attack-leader", ws) as box:
        adv.put_text(
            host.container, f"{ws}/leader.b64", base64.b64encode(binary.read_bytes()).decode()
        )
        host.sh(f"base64 -d {ws}/leader.b64 > {ws}/leader && chmod 0755 {ws}/leader")
        left = module(inventory, "sandbox_exec", {"name": box, "cmd": "/work/leader /work/beat"})
        assert left["failed"] and left["escaped"] and left["rc"] == 0, left
        assert status_of(inventory, box) == "exited"
        assert host.sh(f"cat {ws}/beat").startswith("alive"), "the thread never ran"
        host.sh(f"rm -f {ws}/beat")
        time.sleep(1)
        assert host.sh(f"test -e {ws}/beat && echo BEAT || echo none") == "none", (
            "the thread outlived its stopped sandbox"
        )


def test_under_a_runtime_that_is_not_gvisor_nothing_of_the_callers_runs(
    inventory: Path, host: adv.LabHost
) -> None:
    """The daemon's runsc is swapped for runc: the sandbox is refused and removed, and its
    command, which would leave a trace in its workspace the moment it ran, never ran.
    Control: under the real runsc the same command leaves the trace."""
    nothing_runs_under(inventory, host, adv.NOT_RUNSC, "did not start under gVisor")


def nothing_runs_under(inventory: Path, host: adv.LabHost, fake: str, refusal: str) -> None:
    """Put fake (a script, or a shell command that writes $FAKE) at the path of the lab
    host's runsc (the real one beside it as runsc.fortress-real), create a sandbox whose
    command leaves a trace in its workspace: it must be refused with refusal, removed, and
    leave no trace; then the same sandbox under the real runsc must leave it (the control)."""
    ws = f"{ROOT}/attack-runtime"
    spec = {"image": IMAGE, "command": ["/bin/sh", "-c", "echo ran > /work/trace; sleep 600"],
            "mounts": [{"source": ws, "target": "/work", "read_only": False}]}  # fmt: skip
    runsc = "/usr/bin/runsc"
    host.sh(f"rm -rf {ws} && mkdir -p {ws} && chmod 0777 {ws}")
    try:
        host.sh(f"cp -p {runsc} {runsc}.fortress-real")
        write = fake if not fake.startswith("#!") else f"cat > $FAKE <<'EOF'\n{fake}EOF\n"
        host.sh(f"FAKE={runsc}.fake\n{write}\nchmod 0755 $FAKE && mv $FAKE {runsc}")
        try:
            refused = module(inventory, "sandbox", {"name": "attack-runtime", **spec})
        finally:
            host.sh(f"mv {runsc}.fortress-real {runsc}")
        assert refused.get("failed") and refusal in refused["msg"], refused
        time.sleep(2)  # what ran would have written by now
        trace = host.sh(f"test -e {ws}/trace && echo TRACE || echo none")
        assert trace == "none", "the command ran before the refusal"
        assert status_of(inventory, "attack-runtime") is None, "the refused sandbox was kept"
        made = module(inventory, "sandbox", {"name": "attack-runtime", **spec})
        assert not made.get("failed"), made
        for _ in range(50):
            if host.sh(f"cat {ws}/trace 2>&1 || true") == "ran":
                break
            time.sleep(0.1)
        assert host.sh(f"cat {ws}/trace") == "ran", "control: the command never ran under runsc"
    finally:
        module(inventory, "sandbox", {"name": "attack-runtime", "state": "absent"})
        host.sh(f"rm -rf {ws}")


def test_a_runsc_wrapped_to_strace_behind_the_daemons_back_runs_nothing(
    inventory: Path, host: adv.LabHost
) -> None:
    """daemon.json still names runsc with the role's flags, but the binary at that path adds
    --strace (every syscall's arguments to the log): what the daemon says of its runtime is
    not what the sandbox runs with. The flags the runsc-sandbox process really has, read on
    the host, get it refused and removed before its command runs."""
    wrapped = '#!/bin/sh\nexec /usr/bin/runsc.fortress-real --strace "$@"\n'
    nothing_runs_under(inventory, host, wrapped, "runs under runsc with --strace")


def test_a_runsc_binary_no_role_published_runs_nothing(inventory: Path, host: adv.LabHost) -> None:
    """The daemon's runsc is replaced by a binary no role installed: here the real runsc with
    one byte appended (it runs exactly as runsc does, with the role's flags, so every other
    check passes; it stands in for an older, vulnerable or patched runsc). The digest of the
    binary its runsc-sandbox process runs is not among the published ones: refused and
    removed before its command runs. Control: the real runsc, published by the gvisor role."""
    appended = "cat /usr/bin/runsc.fortress-real > $FAKE && printf x >> $FAKE"
    nothing_runs_under(inventory, host, appended, "that no role published in /etc/fortress/runsc.d")


def test_root_in_an_outer_replacing_its_runsc_gets_its_sandboxes_refused(
    inventory: Path, host: adv.LabHost
) -> None:
    """Root in an outer container replaces that outer's runsc: its root filesystem is
    read-only, so it binds a binary of its own (the runsc with one byte appended, written
    in the outer's writable /var/lib/docker) over /usr/bin/runsc. Sandboxes created through
    the outer's socket are refused and removed: the binary differs from the one the
    outer_sandbox role read from the outer image. Control: unbound, the same sandbox starts.
    (A determined root in an outer can fake the whole proof instead: docs/threat-model.md.)"""
    sock = f"/run/fortress/outer/{host.outer}/docker.sock"
    spec = {"name": "attack-outer-runsc", "image": IMAGE, "docker_socket": sock}
    inside = f"docker exec fortress-outer-{host.outer} sh -c"
    fake = "/var/lib/docker/runsc.attack"
    bound = host.sh(
        f"{inside} 'cat /usr/bin/runsc > {fake} && printf x >> {fake} && chmod 0755 {fake} && "
        f"mount --bind {fake} /usr/bin/runsc && echo BOUND'"
    )
    try:
        assert bound.endswith("BOUND"), bound
        refused = module(inventory, "sandbox", spec)
    finally:
        host.sh(f"{inside} 'umount /usr/bin/runsc; rm -f {fake}'")
    try:
        assert refused.get("failed") and "that no role published" in refused["msg"], refused
        listed = host.sh(f"docker -H unix://{sock} ps -aq --filter name=attack-outer-runsc")
        assert listed == "", "the refused sandbox was kept"
        made = module(inventory, "sandbox", spec)
        assert not made.get("failed"), made
    finally:
        module(inventory, "sandbox", {**spec, "state": "absent"})
