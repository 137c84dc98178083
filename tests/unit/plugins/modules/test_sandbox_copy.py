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
    [('mode: "0600"', "0600"), ("mode: '1777'", "1777"), ("mode: '644'", "0644"),
     ("mode: '0400'", "0400")],
)  # fmt: skip
def test_a_quoted_mode_means_what_it_says(
    monkeypatch: pytest.MonkeyPatch, task: str, mode: str
) -> None:
    assert parse_mode(validated_mode(monkeypatch, task)) == mode


@pytest.mark.parametrize(
    "task", ["mode: 0400", "mode: 400",
             "mode: 440", "mode: 755",
             "mode: 0x1ff"],
)  # fmt: skip
def test_an_unquoted_mode_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    """YAML reads an unquoted mode as a number: 0400 is 256, but 400 is 400 (octal 0620),
    and the two cannot be told apart once read. Only a quoted mode is taken."""
    with pytest.raises(SandboxError, match="quote it"):
        parse_mode(validated_mode(monkeypatch, task))


def validated_mode(monkeypatch: pytest.MonkeyPatch, task: str) -> object:
    spec = argument_spec(monkeypatch)
    params = dict(AnsibleLoader(f"name: s\n{task}").get_single_data())
    validated = ArgumentSpecValidator(spec).validate(params)
    assert validated.error_messages == []
    return validated.validated_parameters["mode"]
