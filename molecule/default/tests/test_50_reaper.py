"""The sandbox_reaper role: TTL reaping on the host itself, by a systemd timer."""

from __future__ import annotations

import json

OUTER = "/run/fortress/outer/default/docker.sock"
CREATE_EXPIRING = (
    "python3 -c \"import sys; sys.path.insert(0, '/usr/local/lib/fortress'); "
    "from sandbox import Sandboxes, SandboxSpec; "
    "Sandboxes(socket_path=sys.argv[1]).create(SandboxSpec(image='fortress/smoke:busybox', "
    "name='reap-me', ttl=1, command=['sleep', '1000']))\""
)


def test_reaper_timer_is_enabled_and_active(host) -> None:
    timer = host.service("fortress-reap.timer")
    assert timer.is_enabled and timer.is_running


def test_reaper_destroys_expired_sandboxes_and_nothing_else(host) -> None:
    # One expired sandbox on the host's dockerd and one in the outer container's daemon.
    host.check_output(f"{CREATE_EXPIRING} /run/docker.sock")
    host.check_output(f"{CREATE_EXPIRING} {OUTER}")
    host.check_output("docker run -d --name not-ours fortress/smoke:busybox sleep 1000")
    try:
        host.check_output("sleep 2 && systemctl start fortress-reap.service")
        names = host.check_output("docker ps -a --format '{{.Names}}'").split()
        assert "reap-me" not in names
        assert "not-ours" in names  # containers Fortress did not create are never touched
        inner = host.check_output(f"docker -H unix://{OUTER} ps -a --format '{{{{.Names}}}}'")
        assert "reap-me" not in inner.split()
        log = host.file("/var/log/fortress/sandbox-audit.log").content_string
        events = [json.loads(line) for line in log.splitlines() if line.strip()]
        reaped = [e for e in events if (e["event"], e.get("sandbox")) == ("reap", "reap-me")]
        assert len(reaped) >= 2, events[-5:]  # one per daemon, each removed by its ID
        assert all(e.get("id") for e in reaped)
    finally:
        host.run("docker rm -f reap-me not-ours")
        host.run(f"docker -H unix://{OUTER} rm -f reap-me")
