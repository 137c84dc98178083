"""The converged host layer: Docker hardened by docker_engine, gVisor registered by gvisor."""

from __future__ import annotations

import json

from fortress_lab import cis

DAEMON_JSON = "/etc/docker/daemon.json"


def test_daemon_json_is_hardened_and_carries_the_runsc_runtimes(host) -> None:
    cfg = json.loads(host.file(DAEMON_JSON).content_string)
    assert cfg["icc"] is False
    assert cfg["live-restore"] is True
    assert cfg["userland-proxy"] is False
    assert cfg["no-new-privileges"] is True
    assert cfg["log-driver"] == "json-file" and cfg["log-opts"]["max-size"] == "10m"
    wanted = host.ansible.get_variables()["docker_engine_daemon_options"]["default-ulimits"]
    assert cfg["default-ulimits"]["nofile"] == wanted["nofile"]  # the lab's override won
    assert cfg["default-ulimits"]["nproc"]["Hard"] == 8192  # the role's default stayed
    assert cfg["bip"] == "172.29.0.1/24"
    network = host.ansible.get_variables()["gvisor_network"]
    runsc = cfg["runtimes"]["runsc"]["runtimeArgs"]
    assert f"--network={network}" in runsc
    assert {"--platform=systrap", "--overlay2=root:memory", "--host-uds=none"} <= set(runsc)
    assert "--network=none" in cfg["runtimes"]["runsc-nonet"]["runtimeArgs"]
    assert host.file(DAEMON_JSON).user == "root" and host.file(DAEMON_JSON).mode == 0o644


def test_docker_info_shows_the_effective_settings(host) -> None:
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert {"runsc", "runsc-nonet"} <= set(info["Runtimes"])
    assert info["Runtimes"]["runsc"]["path"] == "/usr/bin/runsc"
    assert info["DefaultRuntime"] == "runc"  # the host keeps runc; sandboxes name runsc
    assert info["LoggingDriver"] == "json-file"
    assert info["Driver"] == "overlay2"


def test_docker_runs_under_systemd_and_starts_at_boot(host) -> None:
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_gvisor_facts_describe_the_installed_runsc(host) -> None:
    fact = json.loads(host.file("/etc/ansible/facts.d/gvisor.fact").content_string)
    installed = host.check_output("runsc --version").splitlines()[0]
    assert installed == f"runsc version {fact['version']}"
    assert fact["platform"] == "systrap"
    assert fact["network"] == host.ansible.get_variables()["gvisor_network"]


def test_runsc_is_the_fast_systrap_era_build(host) -> None:
    # Debian 12's own runsc (2022, ptrace only) is 12-100x slower; the role takes it from
    # bookworm-backports there. Both platforms must end up on a 2024 build.
    version = json.loads(host.file("/etc/ansible/facts.d/gvisor.fact").content_string)["version"]
    assert int(version.split("~")[-1][:8]) >= 20240101, version


def test_a_gvisor_container_is_verified_from_the_host_side(host) -> None:
    seen = cis.runtime_seen_from_the_host(cis.DockerTarget(host), "runsc")
    assert (seen["runtime"], seen["sandbox_process"]) == ("runsc", True)
    # Inside, gVisor's Sentry answers uname, not the host kernel.
    assert seen["kernel_inside"] != seen["kernel_host"]
    # Control: the same probe on a runc container sees no sandbox process and the host kernel.
    control = cis.runtime_seen_from_the_host(cis.DockerTarget(host), "runc")
    assert (control["runtime"], control["sandbox_process"]) == ("runc", False)
    assert control["kernel_inside"] == control["kernel_host"]
