"""Fortress lab: local lab host images, the lab fleet and leak checks.

Run as `PYTHONPATH=tools python -m fortress_lab --help`. Modules: images (debootstrap-built
images cached by recipe hash), fleet (LabBackend kinds, inventory), leakcheck (before/after
snapshots), probe (stdlib-only state probes), pytest_plugin (the `leak_check` fixture).
"""
