"""The host layer's behavioural CIS daemon checks (fortress_lab.cis, molecule/default's
test_20_cis.py), run against each tenant's inner dockerd through its host-side socket: one
implementation, two targets.

Not applicable to the inner daemon, by design: CIS 2.2 icc and 2.16 userland-proxy concern
the default bridge and published ports, and the inner daemon has neither (bridge none; it
cannot even create a bridge network, the outer's /proc/sys being read-only); its sandboxes
have loopback only (tests/security/test_probes.py::test_probe[network_interfaces]). CIS 2.15
live-restore is configured but cannot act: dockerd is the outer container's main process, so
a dockerd crash restarts the outer and stops its sandboxes
(tests/security/test_faults.py::test_killing_the_inner_dockerd_during_a_task_fails_clearly).
"""

from __future__ import annotations

from conftest import PLATFORM

from fortress_lab import cis

testinfra_hosts = [f"ansible://{PLATFORM}"]


def test_no_new_privileges_is_the_inner_default(host, tenant) -> None:
    """CIS 2.14 on the inner daemon: gVisor does not report NoNewPrivs in /proc, so the flag
    is read from the OCI spec runsc got (the control overrides the daemon default)."""
    seen = cis.no_new_privileges(cis.inner_target(host, tenant))
    assert seen == {"default": "1", "control": "0"}


def test_inner_containers_run_in_gvisor_seen_from_the_host(host, tenant) -> None:
    """The inner daemon's default runtime, checked like the host's: runtime runsc, a
    runsc-sandbox process for the container on the lab host, gVisor's kernel inside."""
    seen = cis.runtime_seen_from_the_host(cis.inner_target(host, tenant), "runsc")
    assert seen["runtime"] == "runsc" and seen["sandbox_process"], seen
    assert seen["kernel_inside"] != seen["kernel_host"], seen


def test_sandbox_output_is_capped_by_size_and_count(host, tenant) -> None:
    """The inner daemon's log-opts (max-size 10m, max-file 3): a sandbox that writes 40 MiB
    to stdout leaves at most 30 MiB of log on the outer's disk, in 3 files; the control, with
    a max-size of its own, keeps it all."""
    seen = cis.log_limits(cis.inner_target(host, tenant), max_size_mib=10, max_files=3)
    assert seen["files"] == 3 and seen["kept"] <= 3 * 10 * 1024 * 1024 + 65536, seen
    assert seen["control_kept"] >= seen["written"], (
        f"control: the output did not reach the log: {seen}"
    )
