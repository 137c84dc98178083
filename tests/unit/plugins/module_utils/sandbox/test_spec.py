"""plugins/module_utils/sandbox/spec.py: what a sandbox is and the checks on caller input."""

from __future__ import annotations

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    EGRESS_POLICY_LABEL,
    LABEL,
    LABEL_EXPIRES,
    LABEL_MOUNTS,
    MAX_TTL,
    RESERVED_LABEL_PREFIX,
    SandboxError,
    SandboxSpec,
    check_ttl,
    parse_mode,
    parse_size,
)


def test_sizes() -> None:
    assert parse_size("512m", "memory") == 512 * 1024**2
    assert parse_size("1G", "memory") == 1024**3
    assert parse_size(None, "memory") is None
    for bad in ("lots", "0m", "-1m", "1.5g"):
        with pytest.raises(SandboxError, match="memory must be a size"):
            parse_size(bad, "memory")


def test_defaults_are_the_safe_ones() -> None:
    spec = SandboxSpec(image="img")
    assert spec.runtime == "runsc" and spec.network == "none" and spec.read_only
    assert spec.user == "65534:65534" and spec.pids and spec.memory


def test_fingerprint_ignores_name_and_follows_env_values_only_under_the_key() -> None:
    key = b"k" * 32
    a = SandboxSpec(image="img", name="a", env={"TOKEN": "s3cret"})
    b = SandboxSpec(image="img", name="b", env={"TOKEN": "s3cret"})
    c = SandboxSpec(image="img", name="a", env={"TOKEN": "other"})
    assert a.fingerprint(key) == b.fingerprint(key) != c.fingerprint(key)
    assert a.fingerprint(key) != a.fingerprint(b"j" * 32)  # another host, another label
    # Without the key, env values do not enter it at all: nothing to guess offline.
    assert a.fingerprint() == c.fingerprint() != a.fingerprint(key)


def test_a_four_digit_pin_is_not_recoverable_from_a_keyed_label() -> None:
    label = SandboxSpec(image="img", env={"PIN": "4821"}).fingerprint(b"\x01" * 32)
    guesses = {
        SandboxSpec(image="img", env={"PIN": f"{n:04d}"}).fingerprint() for n in range(10000)
    }
    assert label not in guesses


def test_ttl_is_bounded_and_modes_are_octal() -> None:
    assert check_ttl(3600) == 3600
    for bad in (0, -5, MAX_TTL + 1):
        with pytest.raises(SandboxError, match="ttl"):
            check_ttl(bad)
    with pytest.raises(SandboxError, match="longer than this host allows \\(60 s\\)"):
        check_ttl(61, max_ttl=60)
    for good, mode in (("0600", "0600"), ("644", "0644"), ("0400", "0400"), ("1777", "1777")):
        assert parse_mode(good) == mode
    for bad in ("+t", "u+s", "0600 /etc", "--reference=/etc/passwd", "9999", "", "4755",
                "2755", "07777", True, None, 1.5, 0o400, 400):  # fmt: skip
        with pytest.raises(SandboxError, match=r"octal|quote it"):
            parse_mode(bad)


def test_spec_check_refuses_bad_values() -> None:
    for bad, message in (({"name": "-x"}, "name"), ({"cpus": 0}, "cpus"), ({"pids": 0}, "pids"),
                         ({"ttl": 10**9}, "ttl")):  # fmt: skip
        with pytest.raises(SandboxError, match=message):
            SandboxSpec(image="img", **bad).check()


@pytest.mark.parametrize(
    "key", [LABEL, LABEL_MOUNTS, LABEL_EXPIRES, EGRESS_POLICY_LABEL, f"{RESERVED_LABEL_PREFIX}x"]
)
def test_a_label_in_the_librarys_namespace_is_refused(key: str) -> None:
    """A caller's label must not set what the library sets (a forged staged-mounts token
    released another sandbox's workspace when its forger was removed)."""
    with pytest.raises(SandboxError, match="reserved"):
        SandboxSpec(image="busybox", labels={key: "0" * 32}).check()
    SandboxSpec(image="busybox", labels={"team": "a", "io.example/x": "1"}).check()
