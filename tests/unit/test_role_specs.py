"""Every role's meta/argument_specs.yml documents exactly its defaults, with the same values.

dev-sec's specs drifted from their defaults; this test keeps ours from drifting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists())


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_role_has_a_spec(role: str) -> None:
    spec = _load(ROLES / role / "meta" / "argument_specs.yml")
    assert "main" in spec["argument_specs"], f"{role}: no main entry point in argument_specs.yml"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_spec_matches_defaults(role: str) -> None:
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"][
        "options"
    ]
    optional = {name for name, opt in options.items() if not opt.get("required")}
    assert optional == set(defaults), (
        f"{role}: in defaults only {sorted(set(defaults) - optional)}, "
        f"in the spec only {sorted(optional - set(defaults))}"
    )
    for name, value in defaults.items():
        assert options[name].get("default") == value, (
            f"{role}: {name} default differs from the spec"
        )
        assert options[name].get("description"), f"{role}: {name} has no description"
        assert all(name.startswith(f"{role}_") for name in defaults), f"{role}: unprefixed variable"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_choices_admit_the_default(role: str) -> None:
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"][
        "options"
    ]
    for name, opt in options.items():
        if "choices" in opt and "default" in opt:
            assert opt["default"] in opt["choices"], f"{role}: {name} default not among its choices"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_other_entry_points_agree_with_main(role: str) -> None:
    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    for entry, spec in specs.items():
        for name, opt in spec.get("options", {}).items():
            if opt.get("required"):
                continue
            assert name in defaults, f"{role}:{entry}: {name} is not a role default"
            assert opt.get("default") == defaults[name], f"{role}:{entry}: {name} default differs"
