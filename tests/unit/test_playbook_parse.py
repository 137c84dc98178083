"""fortress_lab.playbook.parse: what the lab tests read from the json callback."""

from __future__ import annotations

import json

from fortress_lab.playbook import parse


def _doc(result: dict) -> str:
    task = {"task": {"name": "fortress.agents.r : Copy them"}, "hosts": {"h1": result}}
    return "warning before the document\n" + json.dumps({"plays": [{"tasks": [task]}], "stats": {}})


def test_a_loops_diffs_are_kept_with_its_changed_task() -> None:
    item = {"changed": True, "diff": {"before": "old\n", "after": "new\n"}}
    run = parse(0, _doc({"changed": True, "results": [{"changed": False}, item]}))
    assert run.changed == {"h1": ["Copy them"]}
    assert run.diffs == {"h1": [item["diff"]]}


def test_a_plain_tasks_diff_is_kept_and_an_unchanged_one_is_not() -> None:
    diff = {"before": "a", "after": "b"}
    assert parse(0, _doc({"changed": True, "diff": diff})).diffs == {"h1": [diff]}
    assert parse(0, _doc({"changed": False, "diff": diff})).diffs == {}
