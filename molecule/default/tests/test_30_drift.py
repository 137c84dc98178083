"""Drift: check mode reports each hand-made change (daemon.json, the docker service, runsc,
the egress firewall's rules, a file of the installed sandbox library), a converge repairs
it, the next is quiet.

Runs site.yml against the Debian 12 platform only (the Debian 13 one keeps its state).
"""

from __future__ import annotations

import json

from fortress_lab.playbook import run_playbook

DAEMON_JSON = "/etc/docker/daemon.json"
LIBRARY = "/usr/local/lib/fortress/sandbox/audit.py"
PLANTED = "# planted by the drift test"
INSTALL_LIBRARY = "Install the sandbox library package (the code the sandbox modules run)"
SMOKE = "Start a sandbox with the runtime's flags (an OCI bundle in its own network namespace)"


def _state(h) -> dict[str, object]:
    return {
        "daemon.json": h.file(DAEMON_JSON).content_string,
        "docker": h.service("docker").is_running,
        "runsc": h.exists("runsc"),
        "library": h.file(LIBRARY).content_string,
    }


def test_drift_is_reported_repaired_and_then_quiet(inventory, debian12, debian12_host) -> None:
    h = debian12_host
    h.check_output(f'sed -i \'s/"icc": false/"icc": true/\' {DAEMON_JSON}')
    h.check_output("systemctl stop docker.socket docker.service")
    h.check_output("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q runsc")
    h.check_output("nft flush chain inet fortress_egress input")  # the egress firewall
    h.check_output("nft flush chain arp fortress_egress input")  # and its ARP table
    h.check_output(f"echo '{PLANTED}' >> {LIBRARY}")
    drifted = _state(h)
    assert drifted["docker"] is False and drifted["runsc"] is False

    check = run_playbook(inventory, limit=debian12, check=True, diff=True)
    assert check.rc == 0, check.output[-4000:]
    changed = check.changed.get(debian12, [])
    assert "Render daemon.json" in changed, changed
    assert "Manage the docker service" in changed, changed
    assert "Install runsc from the distribution" in changed, changed
    assert "Load the nftables rules and save their listing" in changed, changed
    assert "Show the sandbox library files that differ (check mode)" in changed, changed
    diff_text = json.dumps(check.diffs.get(debian12, []))
    assert '\\"icc\\": true' in diff_text and '\\"icc\\": false' in diff_text, diff_text[:2000]
    assert PLANTED in diff_text, diff_text[:2000]
    assert _state(h) == drifted, "check mode changed the host"

    repair = run_playbook(inventory, limit=debian12)
    assert repair.rc == 0, repair.output[-4000:]
    assert repair.changed_count(debian12) > 0

    again = run_playbook(inventory, limit=debian12)
    assert again.rc == 0, again.output[-4000:]
    assert again.changed_count(debian12) == 0, again.changed
    # The smoke start ran after runsc was installed again, and not on the quiet run after it
    # (the local fact gvisor.smoke answers for an unchanged runsc, kernel and flags).
    assert not repair.results[SMOKE][debian12].get("skipped"), repair.results[SMOKE]
    assert again.results[SMOKE][debian12].get("skipped"), again.results[SMOKE]
    cfg = json.loads(h.file(DAEMON_JSON).content_string)
    assert cfg["icc"] is False
    assert h.service("docker").is_running and h.exists("runsc")
    assert PLANTED not in h.file(LIBRARY).content_string
    assert INSTALL_LIBRARY in repair.changed[debian12], repair.changed
    assert "only its proxy" in h.check_output("nft list chain inet fortress_egress input")
    assert "no other ARP" in h.check_output("nft list chain arp fortress_egress input")
