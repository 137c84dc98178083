"""The exec's reading of Docker's answers (pure logic; the retry itself runs against a real
daemon and runsc in tests/integration/test_sandbox_modules.py)."""

from __future__ import annotations

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.commands import (
    never_started,
    shown,
)


@pytest.mark.parametrize(
    ("inspected", "expected"),
    [
        ({"ExitCode": 126, "Pid": 0, "Running": False}, True),  # the runtime failed to start it
        ({"ExitCode": 126, "Pid": 58619, "Running": False}, False),  # the command exited 126
        ({"ExitCode": 126, "Pid": 0, "Running": True}, False),
        ({"ExitCode": 0, "Pid": 0, "Running": False}, False),
        ({"ExitCode": None, "Pid": 0, "Running": False}, False),
        ({}, False),
    ],
)
def test_only_an_exec_with_no_process_and_126_never_started(inspected, expected) -> None:
    assert never_started(inspected) is expected


def test_a_daemons_reason_is_shown_on_one_bounded_printable_line() -> None:
    hostile = b"OCI runtime exec failed:\r\n\x1b[31mred\x00" + b"x" * 1000
    line = shown(hostile)
    assert line.startswith("OCI runtime exec failed:") and len(line) <= 300
    assert all(c.isprintable() for c in line) and "\x1b" not in line
