"""CIS Docker Benchmark daemon items, checked by behaviour on each converged lab host."""

from __future__ import annotations

from fortress_lab import cis


def test_icc_off_blocks_container_to_container_on_the_default_bridge(host) -> None:
    seen = cis.icc(cis.DockerTarget(host))
    assert seen["default_bridge"] == "", "a sibling reached the server over the default bridge"
    assert seen["control_network"] == "fortress-ok", "control: the probe cannot reach anything"


def test_no_new_privileges_is_the_default(host) -> None:
    seen = cis.no_new_privileges(cis.DockerTarget(host))
    assert seen == {"default": "1", "control": "0"}


def test_published_port_answers_without_a_userland_proxy(host) -> None:
    seen = cis.userland_proxy(cis.DockerTarget(host))
    assert seen["answer"] == "fortress-ok"
    assert seen["docker_proxy_processes"] == ""


def test_live_restore_keeps_containers_across_a_daemon_restart(host) -> None:
    seen = cis.live_restore(cis.DockerTarget(host))
    assert seen["restart_rc"] == 0
    assert seen["after"] == f"true {seen['pid_before']}"


def test_container_logs_are_capped_by_size_and_count(host) -> None:
    """docker_engine's log-opts (max-size 10m, max-file 5): 60 MiB of output leaves at most
    50 MiB of log in 5 files; the control, with a max-size of its own, keeps it all."""
    seen = cis.log_limits(cis.DockerTarget(host), max_size_mib=10, max_files=5)
    assert seen["files"] == 5 and seen["kept"] <= 5 * 10 * 1024 * 1024 + 65536, seen
    assert seen["control_kept"] >= seen["written"], (
        f"control: the output did not reach the log: {seen}"
    )
