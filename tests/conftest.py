"""Shared pytest setup: the leak_check fixture of the lab tooling."""

pytest_plugins = ["fortress_lab.pytest_plugin"]
