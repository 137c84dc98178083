"""The outer layer on a VM lab host: its AppArmor profile loaded and enforced, the escape
routes it must close denied to root in the outer container (with a control in which the same
probe succeeds), cgroup v2 nesting, and gVisor's own network stack inside the outer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

OUTER = "fortress-outer-default"
ROLE_CAPS = set(
    yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "roles/outer_sandbox/defaults/main.yml").read_text()
    )["outer_sandbox_capabilities"]
)
INNER = "docker -H unix:///run/fortress/outer/default/docker.sock"
# CVE-2022-0492's first step: a cgroup v1 hierarchy of one's own (a named one needs no
# controller, so it works on a cgroup v2 host too), whose root has a release_agent; then
# open that release_agent for writing (and close it: never write).
MOUNT_PROBE = (
    "mkdir -p /tmp/cg && mount -t cgroup -o none,name=fortress-probe cgroup /tmp/cg"
    " && exec 3>>/tmp/cg/release_agent && exec 3>&- && echo OPENED; umount /tmp/cg 2>/dev/null"
)
# The profile's release_agent rule, on a path root may otherwise write.
WRITE_PROBE = "mkdir -p /tmp/x && : > /tmp/x/release_agent && echo WROTE"


def _outer_pid(host) -> int:
    return int(host.check_output(f"docker inspect -f '{{{{.State.Pid}}}}' {OUTER}"))


def _denials(host, name: str) -> int:
    log = host.check_output("journalctl -k --no-pager -o cat")
    return sum(
        1 for line in log.splitlines()
        if 'apparmor="DENIED"' in line and 'profile="fortress-outer"' in line and name in line
    )  # fmt: skip


def _outer_like(host, profile: str) -> str:
    """docker run of the outer image with the outer's capabilities and seccomp profile, the
    host cgroup namespace (the worst case: dind now runs in a private one everywhere) and the
    given AppArmor profile."""
    info = json.loads(host.check_output(f"docker inspect {OUTER}"))[0]["HostConfig"]
    caps = " ".join(f"--cap-add {c}" for c in info["CapAdd"])
    return (
        f"docker run --rm --cap-drop ALL {caps} --cgroupns host --network none"
        " --security-opt seccomp=/etc/fortress/outer/seccomp.json"
        f" --security-opt apparmor={profile}"
        " --entrypoint sh fortress/outer:lab -c"
    )


def test_outer_apparmor_profile_is_enforced_and_denies_the_escape_routes(host) -> None:
    status = json.loads(host.check_output("aa-status --json"))
    assert status["profiles"].get("fortress-outer") == "enforce", status["profiles"]
    assert host.check_output(f"docker inspect -f '{{{{.AppArmorProfile}}}}' {OUTER}") == (
        "fortress-outer"
    )
    attr = host.file(f"/proc/{_outer_pid(host)}/attr/current").content_string.strip("\x00\n ")
    assert attr == "fortress-outer (enforce)"
    # Root in the outer container, as if gVisor had been escaped: the mount is refused by the
    # profile (seccomp answers the new mount API ENOSYS, so mount(8) falls back to mount(2),
    # which AppArmor mediates), and the refusal is audited.
    before_mount = _denials(host, 'fstype="cgroup"')
    mount = host.run(f"docker exec {OUTER} sh -c '{MOUNT_PROBE}'")
    assert "OPENED" not in mount.stdout and mount.rc != 0, mount
    assert _denials(host, 'fstype="cgroup"') > before_mount, "not the profile's denial"
    before = _denials(host, "/tmp/x/release_agent")
    write = host.run(f"docker exec {OUTER} sh -c '{WRITE_PROBE}'")
    assert "WROTE" not in write.stdout and "ermission denied" in write.stderr, write
    assert _denials(host, "/tmp/x/release_agent") > before  # the profile's doing, audited


def test_with_the_host_cgroup_namespace_the_profile_stops_release_agent(host) -> None:
    """In the host's cgroup namespace (userns mode on cgroup v1, or dind before it ran in a
    private one) the profile still refuses a fresh cgroup v1 hierarchy (and would refuse its
    release_agent); the control, the same container without the profile, opens it."""
    confined = host.run(f"{_outer_like(host, 'fortress-outer')} '{MOUNT_PROBE}'")
    assert "OPENED" not in confined.stdout and confined.rc != 0, confined
    weak = host.check_output(f"{_outer_like(host, 'unconfined')} '{MOUNT_PROBE}'")
    assert "OPENED" in weak
    assert "WROTE" in host.check_output(f"{_outer_like(host, 'unconfined')} '{WRITE_PROBE}'")


def test_sandboxes_nest_in_the_outer_cgroup_v2_and_use_gvisors_network_stack(host) -> None:
    cid = host.check_output(f"{INNER} run -d --network none fortress/smoke:busybox sleep 60")
    try:
        runtime = host.check_output(f"{INNER} inspect -f '{{{{.HostConfig.Runtime}}}}' {cid}")
        assert runtime == "runsc"
        procs = [p for p in host.check_output("pgrep -af ^runsc-sandbox").splitlines() if cid in p]
        assert len(procs) == 1, procs
        assert "--network=sandbox" in procs[0]
        pid = int(procs[0].split()[0])
        outer_cg = host.file(f"/proc/{_outer_pid(host)}/cgroup").content_string.split("::")[1]
        sandbox_cg = host.file(f"/proc/{pid}/cgroup").content_string.split("::")[1]
        # The outer's processes sit in its "init" leaf; its cgroup is that leaf's parent.
        outer_root = outer_cg.strip().removesuffix("/init")
        assert sandbox_cg.strip().startswith(outer_root + "/"), (outer_cg, sandbox_cg)
    finally:
        host.run(f"{INNER} rm -f {cid}")


# The capabilities runsc needs on this kernel (6.1) to map ids into its gofer's user
# namespace; molecule/outer_dind shows the others needed on container lab hosts.
VARIANT = Path(__file__).resolve().parents[3] / "tools/fortress_lab/files/outer-variant.py"
ON_THE_VM = ["SETUID", "SETGID", "SETFCAP"]


@pytest.fixture(scope="module")
def variant_script(host) -> str:
    host.ansible("copy", f"src={VARIANT} dest=/root/outer-variant.py mode=0755", check=False)
    return "/root/outer-variant.py"


def _variant(host, script: str, kind: str, item: str = "") -> dict:
    out = host.check_output(f"python3 {script} {OUTER} {kind} {item}")
    return json.loads(out.splitlines()[-1])


def test_control_an_exact_copy_of_the_outer_runs_the_double_sandbox(host, variant_script):
    result = _variant(host, variant_script, "none")
    assert result["ok"], result


@pytest.mark.parametrize("cap", ON_THE_VM)
def test_without_it_runsc_cannot_start_here(host, variant_script, cap) -> None:
    assert ROLE_CAPS >= set(ON_THE_VM)
    result = _variant(host, variant_script, "cap", cap)
    assert not result["ok"], f"the outer works without {cap} here: it is not needed ({result})"
