"""plugins/modules/sandbox_copy.py's argument spec, as Ansible applies it to a task."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import parse_mode
from ansible_collections.fortress.agents.plugins.modules import sandbox_copy

UNFIXED = pytest.mark.xfail(strict=True, reason="found by the review of issue 16's fix; fixed next")


def argument_spec(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The module's own options, as its main() hands them to the shared front."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(sandbox_copy, "run_module", lambda spec, *_a, **_k: seen.update(spec))
    sandbox_copy.main()
    return seen


@pytest.mark.parametrize(
    ("task", "mode"),
    [pytest.param("mode: 0400", "0400", marks=UNFIXED),
     pytest.param("mode: 0644", "0644", marks=UNFIXED), ('mode: "0600"', "0600"),
     pytest.param("mode: 755", "0755", marks=UNFIXED), ("mode: '1777'", "1777")],
)  # fmt: skip
def test_a_mode_means_what_the_task_says_quoted_or_not(
    monkeypatch: pytest.MonkeyPatch, task: str, mode: str
) -> None:
    """YAML reads an unquoted 0400 as the integer 256; it must still mean 0400 (as it does
    for ansible.builtin.file), never chmod 256."""
    spec = argument_spec(monkeypatch)
    params = dict(AnsibleLoader(f"name: s\n{task}").get_single_data())
    validated = ArgumentSpecValidator(spec).validate(params)
    assert validated.error_messages == []
    assert parse_mode(validated.validated_parameters["mode"]) == mode
