"""plugins/module_utils/sandbox/audit.py: JSON lines, rotated, no line lost."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.fortress.agents.plugins.module_utils.sandbox import AuditLog


def test_audit_log_writes_json_lines_without_env_values(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit" / "sandbox.log"))
    log.event("exec", sandbox="s1", argv=["echo", "hi"], env_keys=["TOKEN"], rc=0)
    line = (tmp_path / "audit" / "sandbox.log").read_text().strip()
    assert '"event": "exec"' in line and '"env_keys": ["TOKEN"]' in line
    assert oct((tmp_path / "audit" / "sandbox.log").stat().st_mode & 0o777) == "0o640"


def test_writing_past_the_size_rotates_and_loses_no_line(tmp_path: Path) -> None:
    path = tmp_path / "rot" / "audit.log"
    log = AuditLog(str(path), max_bytes=4096)
    for i in range(200):  # about 20 KiB: four rotations, within the five files kept
        log.event("exec", sandbox=f"s{i}", seq=i)
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files][:2] == ["audit.log", "audit.log.1"] and len(files) > 2
    assert all(f.stat().st_size <= 4096 for f in files)
    seqs = sorted(json.loads(line)["seq"] for f in files for line in f.read_text().splitlines())
    assert seqs == list(range(200))
