"""plugins/modules/sandbox_copy.py's argument spec, as Ansible applies it to a task."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    SandboxError,
    parse_mode,
)
from ansible_collections.fortress.agents.plugins.modules import sandbox_copy


def argument_spec(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The module's own options, as its main() hands them to the shared front."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(sandbox_copy, "run_module", lambda spec, *_a, **_k: seen.update(spec))
    sandbox_copy.main()
    return seen


@pytest.mark.parametrize(
    ("task", "mode"),
    [("mode: 0400", "0400"), ("mode: 0644", "0644"), ('mode: "0600"', "0600"),
     ("mode: '1777'", "1777"), ("mode: '644'", "0644")],
)  # fmt: skip
def test_a_mode_means_what_the_task_says_quoted_or_not(
    monkeypatch: pytest.MonkeyPatch, task: str, mode: str
) -> None:
    """YAML reads an unquoted 0400 as the integer 256; it must still mean 0400 (as it does
    for ansible.builtin.file), never chmod 256."""
    assert parse_mode(validated_mode(monkeypatch, task)) == mode


def test_an_unquoted_mode_without_a_leading_zero_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SandboxError, match=r"octal 1363: quote it \('0755'\)"):
        parse_mode(validated_mode(monkeypatch, "mode: 755"))


def validated_mode(monkeypatch: pytest.MonkeyPatch, task: str) -> object:
    spec = argument_spec(monkeypatch)
    params = dict(AnsibleLoader(f"name: s\n{task}").get_single_data())
    validated = ArgumentSpecValidator(spec).validate(params)
    assert validated.error_messages == []
    return validated.validated_parameters["mode"]
