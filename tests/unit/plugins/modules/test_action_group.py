"""meta/runtime.yml's action group names every module of the collection, so that
`module_defaults: group/fortress.agents.sandbox` reaches each one (a module added later and
left out would silently ignore the play's defaults)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[4]


def test_the_sandbox_group_names_every_module() -> None:
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    modules = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
    assert modules, "no modules found"
    assert sorted(runtime["action_groups"]["sandbox"]) == modules
